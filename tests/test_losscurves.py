"""Convergence curves (Appendix J): window reduction of loss logs, identity, the plot and scripts."""

import importlib.util
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from vaetransfer import losscurves
from vaetransfer.classify import classifier_columns
from vaetransfer.figures import LOSS_FIGURES
from vaetransfer.losslog import log_columns
from vaetransfer.panels import EmptySelection

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def write_log(path, columns, n, seed, first_step=0):
    """A loss log as vaetransfer.losslog writes it: int64 step, float64 terms (positive)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.uniform(0.5, 2.0, size=(n, len(columns) - 1)), columns=list(columns[1:]))
    frame.insert(0, "step", np.arange(first_step, first_step + n, dtype=np.int64))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return frame


def run(tmp_path, name, n, seed, **ids):
    """A run dict; the file path deliberately says nothing true about the run."""
    identity = {"dataset": "dsprites", "architecture": "conv", "objective": "beta_vae", "hparam": 1.0,
                "seed": seed, **ids}
    columns = (classifier_columns(["shape", "scale"]) if identity["architecture"] == "classifier"
               else log_columns(identity["objective"], 10))
    columns = ("step", *columns[1:]) if columns[0] == "step" else ("step", *columns)
    frame = write_log(tmp_path / "celeba" / "fc" / f"{name}.parquet", columns, n, seed)
    return {**identity, "losses": str(tmp_path / "celeba" / "fc" / f"{name}.parquet")}, frame


def test_windows_are_consecutive_and_at_most_points():
    for n, points in [(1234, 100), (100, 100), (99, 100), (7, 3), (0, 5)]:
        starts = losscurves.windows(n, points)
        assert len(starts) <= points and (n == 0 or starts[0] == 0)
        assert np.all(np.diff(starts) > 0)


def test_aggregate_means_windows_exactly_and_carries_identity(tmp_path):
    a, frame_a = run(tmp_path, "a", 1234, seed=0)
    b, _ = run(tmp_path, "b", 50, seed=3, objective="annealed_vae", hparam=25.0)
    table = losscurves.aggregate([a, b], points=100)
    assert list(table.columns) == losscurves.COLUMNS
    rows_a = table[table["seed"] == 0]
    assert set(rows_a["term"]) == set(frame_a.columns) - {"step"}
    loss = rows_a[rows_a["term"] == "loss"].sort_values("step")
    size = int(np.ceil(1234 / 100))  # 13 steps per window -> 95 windows
    assert len(loss) == int(np.ceil(1234 / size)) <= 100
    values = frame_a["loss"].to_numpy()
    reference = np.array([values[i:i + size].mean() for i in range(0, 1234, size)], dtype=np.float64)
    np.testing.assert_allclose(loss["value"].to_numpy(), reference, rtol=1e-13, atol=0)
    assert loss["step"].tolist() == [min(i + size, 1234) - 1 for i in range(0, 1234, size)]
    # identity from the dicts, not from the misleading path (celeba/fc/...)
    assert set(rows_a["dataset"]) == {"dsprites"} and set(rows_a["architecture"]) == {"conv"}
    rows_b = table[table["seed"] == 3]
    assert set(rows_b["objective"]) == {"annealed_vae"} and set(rows_b["hparam"]) == {25.0}
    assert "capacity" in set(rows_b["term"])  # the objective's extra logged term
    assert len(rows_b[rows_b["term"] == "loss"]) == 50  # shorter than points: one window per step
    assert table.dtypes["step"] == np.int64 and table.dtypes["value"] == np.float64


def test_aggregate_handles_classifier_logs_and_unsorted_steps(tmp_path):
    clf, frame = run(tmp_path, "clf", 30, seed=1, architecture="classifier", objective="cross_entropy")
    frame.iloc[::-1].to_parquet(clf["losses"], index=False)  # a resumed log may be out of order
    table = losscurves.aggregate([clf], points=10)
    acc = table[table["term"] == "accuracy_shape"].sort_values("step")
    np.testing.assert_allclose(acc["value"], frame["accuracy_shape"].to_numpy().reshape(10, 3).mean(axis=1),
                               rtol=1e-13)
    assert acc["step"].tolist() == list(range(2, 30, 3))


def test_aggregate_names_a_missing_identity_key(tmp_path):
    a, _ = run(tmp_path, "a", 10, seed=0)
    del a["seed"]
    with pytest.raises(KeyError, match="seed"):
        losscurves.aggregate([a])


def curves(tmp_path):
    runs = [run(tmp_path, f"{obj}{hp}{s}", 40, seed=s, objective=obj, hparam=hp)[0]
            for obj, hp in [("beta_vae", 1.0), ("beta_vae", 4.0)] for s in (0, 1)]
    runs.append(run(tmp_path, "fc", 40, seed=0, architecture="fc")[0])
    runs.append(run(tmp_path, "sym", 40, seed=0, dataset="symsol")[0])
    return losscurves.aggregate(runs, points=8)


def test_plot_one_subplot_per_dataset_architecture_with_seed_bands(tmp_path):
    table = curves(tmp_path)
    fig = losscurves.plot(table, datasets=["symsol", "dsprites"])
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["symsol, conv", "dsprites, conv", "dsprites, fc"]
    conv = axes[1]
    assert [t.get_text() for t in conv.get_legend().get_texts()] == ["beta_vae, 1", "beta_vae, 4"]
    assert conv.get_yscale() == "log"
    line = conv.get_lines()[1]
    rows = table[(table["term"] == "loss") & (table["architecture"] == "conv") & (table["dataset"] == "dsprites")
                 & (table["hparam"] == 4.0)]
    expected = rows.groupby("step")["value"].mean()
    np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())
    band = losscurves.seed_band(rows)
    assert (band["min"] <= band["mean"]).all() and (band["mean"] <= band["max"]).all()
    assert np.allclose(band["max"], rows.groupby("step")["value"].max().to_numpy())
    with pytest.raises(EmptySelection, match="celeba"):
        losscurves.plot(table, datasets=["celeba"])


def test_negative_terms_stay_linear(tmp_path):
    table = curves(tmp_path)
    table.loc[table["term"] == "elbo", "value"] *= -1
    (ax, *_) = losscurves.plot(table, datasets=["dsprites"], term="elbo").axes
    assert ax.get_yscale() == "linear"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scripts_aggregate_then_plot_appJ(tmp_path):
    runs = [run(tmp_path, f"r{s}", 25, seed=s)[0] for s in (0, 1)]
    out = tmp_path / "tables" / "losses.parquet"
    _script("aggregate_losses").main(runs, str(out), points=5)
    table = pd.read_parquet(out)
    assert set(table["seed"]) == {0, 1} and table.groupby(["seed", "term"]).size().max() == 5
    png, pdf = tmp_path / "appJ.png", tmp_path / "appJ.pdf"
    _script("plot_losses").main([str(out)], {"datasets": ["dsprites"]}, str(png), str(pdf))
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"
    assert LOSS_FIGURES["appJ"](table, {}).axes[0].get_title() == "dsprites, conv"
    # another logged term than the loss (config figures.appJ.term)
    assert LOSS_FIGURES["appJ"](table, {"term": "kl"}).axes[0].get_ylabel() == "kl"
    assert LOSS_FIGURES["appJ"](table, {}).axes[0].get_ylabel() == "loss"
