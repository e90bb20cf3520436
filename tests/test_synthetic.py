"""Paper Figure 1 (Section 2.3): the toy matrices, the scores table, the plot and the workflow target."""

import re

import numpy as np
import pandas as pd
import pytest

from vaetransfer.plotting import save_figure
from vaetransfer.similarity import linear_cka, procrustes_similarity
from vaetransfer.synthetic import figure1_table, plot_figure1, toy_matrices

from .conftest import run_snakemake

NS = list(range(50, 1001, 40))  # 50, 90, ..., 970
SHARED = {"A-B": 0.0, "A-C": 0.8, "A-D": 0.5}


@pytest.fixture(scope="module")
def table():
    return figure1_table()


def _n_columns_of_a(X, A):
    """How many columns of X are (bit-for-bit) a column of A."""
    return sum(any(np.array_equal(x, a) for a in A.T) for x in X.T)


@pytest.mark.parametrize("n", [50, 90, 970])
def test_toy_matrices_share_the_documented_columns(n):
    mats = toy_matrices(n)
    assert sorted(mats) == ["A", "B", "C", "D"]
    assert all(m.shape == (n, 50) for m in mats.values())
    assert all(m.min() >= 0.0 and m.max() < 1.0 for m in mats.values())
    A = mats["A"]
    # The authors' draw: seed 0, generated feature by feature.
    np.testing.assert_array_equal(A, np.random.RandomState(0).random_sample((50, n)).T)
    np.testing.assert_array_equal(mats["B"], np.random.RandomState(42).random_sample((50, n)).T)
    np.testing.assert_array_equal(mats["C"][:, :40], A[:, :40])
    np.testing.assert_array_equal(mats["D"][:, :25], A[:, :25])
    assert _n_columns_of_a(mats["B"], A) == 0
    assert _n_columns_of_a(mats["C"], A) == 40
    assert _n_columns_of_a(mats["D"], A) == 25
    # Fresh columns are fresh: not correlated with A's remaining columns beyond chance.
    fresh = np.corrcoef(A[:, 40:].T, mats["C"][:, 40:].T)[:10, 10:]
    assert np.abs(fresh).max() < 0.9
    # Deterministic.
    again = toy_matrices(n)
    assert all(np.array_equal(mats[k], again[k]) for k in mats)


def test_toy_matrices_reject_too_few_examples():
    with pytest.raises(ValueError, match="at least 2"):
        toy_matrices(1)


@pytest.mark.parametrize("n", [50, 490, 970])
def test_a_against_itself_scores_one(n):
    A = toy_matrices(n)["A"]
    assert linear_cka(A, A) == pytest.approx(1.0, abs=1e-9)
    assert procrustes_similarity(A, A) == pytest.approx(1.0, abs=1e-9)


def test_table_has_one_row_per_n_comparison_metric(table):
    assert list(table.columns) == ["n", "comparison", "shared_fraction", "metric", "score"]
    assert len(table) == len(NS) * 3 * 2
    assert not table.duplicated(["n", "comparison", "metric"]).any()
    assert sorted(table["n"].unique()) == NS
    assert set(table["metric"]) == {"cka", "procrustes"}
    assert dict(zip(table["comparison"], table["shared_fraction"])) == SHARED
    assert table["score"].notna().all()
    assert table["score"].between(0.0, 1.0).all()


def test_table_honours_custom_ns():
    small = figure1_table(ns=[60, 100])
    assert sorted(small["n"].unique()) == [60, 100] and len(small) == 12


def _curves(table):
    return table.pivot_table(index="n", columns=["metric", "comparison"], values="score")


@pytest.mark.parametrize("metric", ["cka", "procrustes"])
def test_more_shared_features_score_higher_at_large_n(table, metric):
    curves = _curves(table)[metric]
    large = curves[curves.index >= 500]
    assert len(large) > 5
    assert (large["A-C"] > large["A-D"]).all() and (large["A-D"] > large["A-B"]).all()


@pytest.mark.parametrize("metric", ["cka", "procrustes"])
def test_scores_fall_towards_the_shared_fraction_as_n_grows(table, metric):
    # For i.i.d. columns with equal variance, Xc^T Yc / n -> var * [I_k 0; 0 0], so both CKA and
    # the nuclear norm of the normalised cross product tend to k / 50 (the shared fraction); with
    # few examples they are biased upwards.
    curves = _curves(table)[metric]
    for comparison, shared in SHARED.items():
        curve = curves[comparison]
        assert curve.iloc[-1] < curve.iloc[0] - 0.05
        assert (curve >= shared - 0.01).all()
    if metric == "cka":
        assert np.allclose(curves.iloc[-1][list(SHARED)], list(SHARED.values()), atol=0.06)


def test_procrustes_is_above_cka(table):
    wide = table.pivot_table(index=["n", "comparison"], columns="metric", values="score")
    assert (wide["procrustes"] > wide["cka"]).all()
    # Most markedly for independent matrices at large n (paper Fig. 1, left panel).
    last = wide.xs(NS[-1], level="n")
    assert last.loc["A-B", "procrustes"] > 2 * last.loc["A-B", "cka"]


def test_plot_has_three_panels_with_both_metrics(table, tmp_path):
    fig = plot_figure1(table)
    assert len(fig.axes) == 3
    for ax, partner in zip(fig.axes, "BCD"):
        assert f"A vs {partner}" in ax.get_title()
        assert len(ax.get_lines()) == 2
        assert ax.get_ylim() == (0.0, 1.0)
        for line in ax.get_lines():
            assert list(line.get_xdata()) == NS
    save_figure(fig, tmp_path / "fig1.png", tmp_path / "fig1.pdf")
    assert (tmp_path / "fig1.png").stat().st_size > 10_000
    assert (tmp_path / "fig1.pdf").stat().st_size > 5_000


def test_plot_rejects_a_table_without_comparisons(table):
    with pytest.raises(ValueError, match="A-B"):
        plot_figure1(table.iloc[0:0])


TINY = ["--configfile=tests_configs/tiny.yaml"]


def test_fig1_target_plans_only_the_synthetic_job(workdir):
    proc = run_snakemake(*TINY, "fig1", "-n", "--quiet", "rules", cwd=workdir)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    assert counts == {"figure1_synthetic": "1", "fig1": "1", "total": "2"}


@pytest.mark.slow
def test_fig1_target_draws_the_figure(workdir, table):
    run_snakemake(*TINY, "fig1", "--cores", "1", cwd=workdir)
    results = workdir / "results"
    assert (results / "figures/fig1.png").stat().st_size > 10_000
    assert (results / "figures/fig1.pdf").stat().st_size > 5_000
    pd.testing.assert_frame_equal(pd.read_parquet(results / "tables/fig1.parquet"), table)
    assert (results / "logs/figure1_synthetic.log").exists()
    assert not (results / "models").exists()
    proc = run_snakemake(*TINY, "fig1", "-n", cwd=workdir)
    assert "Nothing to be done" in proc.stdout + proc.stderr
