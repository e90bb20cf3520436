"""Figures: the registry, panel selection, seed averaging, layer order, appF/appI, output files."""

import importlib.util
import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vaetransfer import figures, panels, plotting
from vaetransfer.figures import FIGURES, LOSS_FIGURES
from vaetransfer.layers import layer_names
from vaetransfer.plotting import EmptySelection, heatmap_axes, layer_matrix, save_figure, select_cross_domain
from vaetransfer.scoring import TABLE_COLUMNS, as_table

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
HNAME = {"beta_vae": "beta", "cross_entropy": "weight"}


def score(metric, sx, sy, tx, ty, i, j):
    """Known cell value: seed part + layer part + checkpoint-gap part; Procrustes a nonlinear twin."""
    cka = 0.1 * (sx + sy) + 0.01 * (i + j) + 0.01 * (ty - tx)
    return cka if metric == "cka" else 0.9 * np.sqrt(cka) + 0.05 * np.sin(i * j)


def block(family, x, y, seed_pairs, step_pairs, eval_dataset, metrics=("cka",), **extra):
    """Rows of one family: x, y = (dataset, architecture, objective, hparam); every seed pair x step
    pair x layer pair (in each architecture's library order) x metric."""
    rows = []
    for (sx, sy), (tx, ty), metric in itertools.product(seed_pairs, step_pairs, metrics):
        names = [layer_names(x[1]), layer_names(y[1])]
        for (i, lx), (j, ly) in itertools.product(enumerate(names[0]), enumerate(names[1])):
            row = {"family": family, "metric": metric, "layer_x": lx, "layer_y": ly, "n_examples": 10,
                   "score": score(metric, sx, sy, tx, ty, i, j)}
            for side, (ds, arch, obj, hp), seed, step in (("x", x, sx, tx), ("y", y, sy, ty)):
                row.update({f"dataset_{side}": ds, f"architecture_{side}": arch, f"objective_{side}": obj,
                            f"hparam_name_{side}": HNAME[obj], f"hparam_{side}": hp, f"seed_{side}": seed,
                            f"step_{side}": step, f"eval_dataset_{side}": eval_dataset,
                            f"source_dataset_{side}": ds, f"retrained_{side}": "", f"constant_{side}": False})
            row["debiased"] = False
            rows.append({**row, **extra})
    return rows


SAME = [(0, 0), (1, 1)]
ALL = list(itertools.product([0, 1], [0, 1]))
STEPS = [5, 12, 20]
DYN = [(a, b) for a, b in itertools.combinations_with_replacement(STEPS, 2)]  # i <= j, as the plan scores
VAE, FC, COLLAPSED = ("dsprites", "conv", "beta_vae", 1.0), ("dsprites", "fc", "beta_vae", 1.0), \
    ("dsprites", "conv", "beta_vae", 8.0)
CLF = ("dsprites", "classifier", "cross_entropy", 1.0)


def synthetic_table():
    """Every family the figures read, with known scores (:func:`score`)."""
    rows = [
        *block("learning_dynamics", VAE, VAE, SAME, DYN, "dsprites"),
        *block("learning_dynamics", FC, FC, SAME, DYN, "dsprites"),
        *block("model_pairs", COLLAPSED, VAE, ALL, [(20, 20)], "dsprites", metrics=("cka", "procrustes")),
        *block("model_pairs", FC, VAE, ALL, [(20, 20)], "dsprites"),
        *block("encoder_vs_classifier", VAE, CLF, ALL, [(20, 20)], "dsprites"),
        *block("cross_domain", VAE, ("symsol", *VAE[1:]), ALL, [(20, 20)], "symsol"),
        *block("retrained_latents", ("symsol", *VAE[1:]), ("symsol", *VAE[1:]), ALL, [(20, 20)], "symsol",
               source_dataset_x="dsprites", retrained_x="latents"),
    ]
    return as_table(pd.DataFrame(rows, columns=TABLE_COLUMNS))


@pytest.fixture(scope="module")
def table():
    return synthetic_table()


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


DYNAMICS = {"dataset": "dsprites", "objective": "beta_vae", "hparam": 1}
MODELS = {"dataset": "dsprites", "x": {"objective": "beta_vae", "hparam": 8}, "y": {"objective": "beta_vae", "hparam": 1}}
FC_MODELS = {"kind": "models", "dataset": "dsprites", "x": {"architecture": "fc", "objective": "beta_vae", "hparam": 1},
             "y": {"objective": "beta_vae", "hparam": 1}}
PAIR = {"source": "dsprites", "target": "symsol"}
#: name -> (spec, [(row architecture, column architecture) of each heatmap])
CASES = {
    "fig2": (DYNAMICS, [("conv", "conv")]),
    "fig3": (MODELS, [("conv", "conv")]),
    "fig4": ({"panels": [MODELS, FC_MODELS]}, [("conv", "conv"), ("fc", "conv")]),
    "fig5a": (PAIR, [("conv", "conv")]),
    "fig5b": (PAIR, [("conv", "conv")]),
    "appF": (MODELS, [("conv", "conv")] * 2),
    "appG": ({"panels": [{**DYNAMICS, "architecture": "fc"}, FC_MODELS]}, [("fc", "fc"), ("fc", "conv")]),
    "appH": ({"dataset": "dsprites"}, [("conv", "classifier")]),
    "appI": (DYNAMICS, [("conv", "conv")] * 2),
}


def labels(axis_ticks):
    return [t.get_text() for t in axis_ticks]


def drawn(ax):
    """The matrix a seaborn heatmap axes shows (rows top to bottom)."""
    mesh = ax.collections[0]
    return np.asarray(mesh.get_array()).reshape(len(ax.get_yticklabels()), len(ax.get_xticklabels()))


def test_registry_maps_every_heatmap_figure_to_its_function():
    assert FIGURES == {"fig2": figures.fig2, "fig3": figures.fig3, "fig4": figures.fig4, "fig5a": figures.fig5a,
                       "fig5b": figures.fig5b, "appF": figures.appF, "appG": figures.appG,
                       "appH": figures.appH, "appI": figures.appI}
    assert set(FIGURES) == set(panels.FIGURE_KINDS)
    assert LOSS_FIGURES == {"appJ": figures.appJ}
    assert all(f.__doc__ for f in [*FIGURES.values(), *LOSS_FIGURES.values()])
    assert plotting.EmptySelection is panels.EmptySelection


@pytest.mark.parametrize("name", sorted(CASES))
def test_figure_renders_in_library_layer_order(name, table, tmp_path):
    spec, axes_archs = CASES[name]
    fig = FIGURES[name](table, spec)
    axes = heatmap_axes(fig)
    assert len(axes) == len(axes_archs)
    for ax, (arch_rows, arch_cols) in zip(axes, axes_archs):
        assert labels(ax.get_yticklabels()) == list(layer_names(arch_rows))
        assert labels(ax.get_xticklabels()) == list(layer_names(arch_cols))
        assert ax.collections[0].get_clim() == (0.0, 1.0)
        assert ax.collections[0].get_cmap().name == "rocket"
        assert not ax.texts  # no annotations
        assert "seed pairs" in ax.get_title()
    colourbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colourbars) == 1
    save_figure(fig, tmp_path / f"{name}.png", tmp_path / f"{name}.pdf", dpi=30)
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / f"{name}.pdf").read_bytes()[:4] == b"%PDF"


def test_classifier_axis_has_seven_layers(table):
    (ax,) = heatmap_axes(FIGURES["appH"](table, {"dataset": "dsprites"}))
    assert labels(ax.get_xticklabels()) == ["input", "c/1", "c/2", "c/3", "c/4", "c/5", "c/6"]
    assert ax.get_xlabel() == "classifier cross_entropy, weight=1" and ax.get_ylabel() == "beta_vae, beta=1"


def test_dynamics_cell_is_the_mean_over_same_seed_pairs(table):
    (ax,) = heatmap_axes(FIGURES["fig2"](table, DYNAMICS))
    assert ax.get_ylabel() == "beta_vae, beta=1, step=5" and ax.get_xlabel() == "beta_vae, beta=1, step=20"
    assert ax.get_title() == "CKA on dsprites (mean of 2 seed pairs)"
    i, j = list(layer_names("conv")).index("e/1"), list(layer_names("conv")).index("d/2")
    expected = np.mean([score("cka", s, s, 5, 20, i, j) for s in (0, 1)])
    assert drawn(ax)[i, j] == pytest.approx(expected)


def test_cross_domain_cell_is_the_mean_over_all_seed_pairs(table):
    (ax,) = heatmap_axes(FIGURES["fig5a"](table, {**PAIR, "title": "my title"}))
    assert ax.get_title() == "my title"
    expected = np.mean([score("cka", sx, sy, 20, 20, 0, 0) for sx, sy in ALL])
    assert drawn(ax)[0, 0] == pytest.approx(expected)
    rows = select_cross_domain(table, "dsprites", "symsol", "cka")  # report.py's entry point
    assert layer_matrix(rows).loc["input", "input"] == pytest.approx(expected)


def test_panels_wrap_after_three_per_row(table):
    fig = FIGURES["fig4"](table, {"panels": [MODELS, FC_MODELS, MODELS, FC_MODELS]})
    axes = heatmap_axes(fig)
    assert len(axes) == 4
    rows = [ax.get_subplotspec().rowspan.start for ax in axes]
    cols = [ax.get_subplotspec().colspan.start for ax in axes]
    assert rows == [0, 0, 0, 1] and cols == [0, 1, 2, 0]


def test_appI_draws_every_earlier_checkpoint_against_the_final(table):
    axes = heatmap_axes(FIGURES["appI"](table, {**DYNAMICS, "step_x": "first"}))
    assert [ax.get_ylabel() for ax in axes] == ["beta_vae, beta=1, step=5", "beta_vae, beta=1, step=12"]
    assert {ax.get_xlabel() for ax in axes} == {"beta_vae, beta=1, step=20"}
    expected = np.mean([score("cka", s, s, 12, 20, 3, 4) for s in (0, 1)])
    assert drawn(axes[1])[3, 4] == pytest.approx(expected)


def test_appF_scatter_correlation_matches_an_independent_reference(table):
    fig = FIGURES["appF"](table, MODELS)
    heat = heatmap_axes(fig)
    (scatter,) = [ax for ax in fig.axes if ax not in heat and ax.get_label() != "<colorbar>"]
    # Reference cells: seed-pair means straight from score(), row-major over the 16 x 16 layers.
    n = len(layer_names("conv"))
    ref = {m: np.array([[np.mean([score(m, sx, sy, 20, 20, i, j) for sx, sy in ALL]) for j in range(n)]
                        for i in range(n)], dtype=np.float64).ravel() for m in ("cka", "procrustes")}
    np.testing.assert_allclose(scatter.collections[0].get_offsets(), np.c_[ref["cka"], ref["procrustes"]], rtol=1e-12)
    pearson = stats.pearsonr(ref["cka"], ref["procrustes"])[0]
    spearman = stats.spearmanr(ref["cka"], ref["procrustes"])[0]
    assert scatter.get_title() == f"Pearson r = {pearson:.3f}, Spearman ρ = {spearman:.3f}"
    cells = figures.cell_pairs(*(figures.panel_heatmap(table, panels.figure_panels("appF", MODELS)[0], m).matrix
                                 for m in ("cka", "procrustes")))
    corr = figures.correlations(cells)
    assert corr["pearson"] == pytest.approx(pearson, rel=1e-12)
    assert corr["spearman"] == pytest.approx(spearman, rel=1e-12)
    assert [ax.get_title().split(" on ")[0] for ax in heat] == ["CKA", "Procrustes similarity"]


def test_missing_selection_raises_naming_the_panel(table):
    absent = {**MODELS, "x": {"objective": "beta_vae", "hparam": 4}}
    with pytest.raises(EmptySelection, match=r"beta_vae, 4 vs beta_vae, 1 on dsprites"):
        FIGURES["fig4"](table, {"panels": [MODELS, absent]})
    with pytest.raises(EmptySelection, match="dynamics of beta_vae, 1 on dsprites"):
        FIGURES["appI"](table, {**DYNAMICS, "step_y": 5})  # no checkpoint before the first
    with pytest.raises(EmptySelection, match="cross_domain rows for source='symsol', target='dsprites'"):
        select_cross_domain(table, "symsol", "dsprites", "cka")


def _script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plot_heatmap_script_concatenates_block_tables(table, tmp_path):
    paths = []
    for family in ("model_pairs", "learning_dynamics"):
        paths.append(tmp_path / f"{family}.parquet")
        table[table["family"] == family].to_parquet(paths[-1])
    spec = {"panels": [{**DYNAMICS, "kind": "dynamics"}, {**MODELS, "kind": "models"}]}
    png, pdf = tmp_path / "out" / "appG.png", tmp_path / "out" / "appG.pdf"
    _script("plot_heatmap").main([*map(str, paths), str(paths[0])], "appG", spec, str(png), str(pdf))
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"
