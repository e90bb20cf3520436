"""Figures: selection from the long table, seed averaging, layer order, output files."""

import itertools

import numpy as np
import pandas as pd
import pytest

from vaetransfer.figures import FIGURES, fig2, fig5a, fig5b
from vaetransfer.layers import LAYER_NAMES
from vaetransfer.plotting import EmptySelection, layer_matrix, save_figure, select_learning_dynamics
from vaetransfer.scoring import TABLE_COLUMNS, as_table


def synthetic_table():
    """Scores = seed + (0.01 * layer index pair) so averages are checkable by hand."""
    rows = []
    for family, (dx, dy, ev), steps in [
        ("learning_dynamics", ("dsprites", "dsprites", "dsprites"), [(5, 5), (5, 20), (20, 20)]),
        ("cross_domain", ("dsprites", "symsol", "symsol"), [(20, 20)]),
    ]:
        seed_pairs = [(0, 0), (1, 1)] if family == "learning_dynamics" else list(itertools.product([0, 1], [0, 1]))
        for (sx, sy), (tx, ty) in itertools.product(seed_pairs, steps):
            for (i, lx), (j, ly) in itertools.product(enumerate(LAYER_NAMES), repeat=2):
                rows.append({
                    "dataset_x": dx, "architecture_x": "conv", "architecture_y": "conv", "objective_x": "beta_vae", "hparam_name_x": "beta", "hparam_x": 1.0,
                    "seed_x": sx, "step_x": tx, "eval_dataset_x": ev,
                    "dataset_y": dy, "objective_y": "beta_vae", "hparam_name_y": "beta", "hparam_y": 1.0,
                    "seed_y": sy, "step_y": ty, "eval_dataset_y": ev,
                    "family": family, "layer_x": lx, "layer_y": ly, "metric": "cka",
                    "score": 0.1 * (sx + sy) + 0.001 * (i + j) + (0.5 if tx != ty else 0.0), "n_examples": 10,
                })
    return as_table(pd.DataFrame(rows, columns=TABLE_COLUMNS))


def test_layer_matrix_is_in_library_order_and_averages_seeds():
    table = synthetic_table()
    rows, first, final = select_learning_dynamics(table, "dsprites", "beta_vae", 1, "cka")
    assert (first, final) == (5, 20)
    assert set(zip(rows.seed_x, rows.seed_y)) == {(0, 0), (1, 1)}
    matrix = layer_matrix(rows)
    assert list(matrix.index) == list(LAYER_NAMES) == list(matrix.columns)
    # mean over seeds (0,0) and (1,1): 0.1 * (0 + 2) / 2 = 0.1, plus the early-vs-final offset 0.5.
    assert matrix.loc["e/1", "d/2"] == pytest.approx(0.1 + 0.5 + 0.001 * (1 + 11))


def test_empty_selection_names_the_request():
    with pytest.raises(EmptySelection, match="objective='annealed_vae'"):
        select_learning_dynamics(synthetic_table(), "dsprites", "annealed_vae", 1, "cka")


def test_figures_render_to_png_and_pdf(tmp_path):
    table = synthetic_table()
    assert FIGURES == {"fig2": fig2, "fig5a": fig5a, "fig5b": fig5b}
    for name, spec in [("fig2", {"dataset": "dsprites", "objective": "beta_vae", "hparam": 1}),
                       ("fig5a", {"source": "dsprites", "target": "symsol"})]:
        fig = FIGURES[name](table, spec)
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == list(LAYER_NAMES)
        save_figure(fig, tmp_path / f"{name}.png", tmp_path / f"{name}.pdf")
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig2.pdf", "fig2.png", "fig5a.pdf", "fig5a.png"]


def test_fig5a_averages_all_seed_pairs():
    from vaetransfer.plotting import select_cross_domain

    rows = select_cross_domain(synthetic_table(), "dsprites", "symsol", "cka")
    assert len(rows[["seed_x", "seed_y"]].drop_duplicates()) == 4
    m = layer_matrix(rows)
    assert m.loc["input", "input"] == pytest.approx(np.mean([0.0, 0.1, 0.1, 0.2]))
