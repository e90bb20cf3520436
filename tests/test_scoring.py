"""Shard scoring and aggregation: identities from sidecars, every layer pair, schema enforced."""

import numpy as np
import pandas as pd
import pytest

from vaetransfer.activations import save_activations
from vaetransfer.layers import LAYER_NAMES
from vaetransfer.scoring import TABLE_COLUMNS, aggregate, score_pairs
from vaetransfer.similarity import linear_cka, procrustes_similarity


def fake_dump(path, seed, dataset="dsprites", step=10, indices=range(40), eval_dataset="dsprites"):
    rng = np.random.default_rng(seed)
    n = len(list(indices))
    arrays = {name: rng.normal(size=(n, 3 + i)).astype(np.float32) for i, name in enumerate(LAYER_NAMES)}
    meta = {
        "model": {"dataset": dataset, "objective": "beta_vae", "hparam_name": "beta", "hparam": 1.0,
                  "seed": seed, "step": step},
        "eval_dataset": eval_dataset,
        "example_indices": list(indices),
    }
    save_activations(path, arrays, meta)
    return arrays


def test_scores_every_layer_pair_with_identities_from_sidecars(tmp_path):
    a = fake_dump(tmp_path / "whatever_a.npz", seed=3, step=5)
    b = fake_dump(tmp_path / "whatever_b.npz", seed=4, step=50, dataset="symsol")
    table = score_pairs([(tmp_path / "whatever_a.npz", tmp_path / "whatever_b.npz")], ["cka", "procrustes"], "fam")
    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == 16 * 16 * 2
    # Identities come from the sidecars, not from the (meaningless) file names.
    assert set(table["seed_x"]) == {3} and set(table["seed_y"]) == {4}
    assert set(table["step_x"]) == {5} and set(table["step_y"]) == {50}
    assert set(table["dataset_y"]) == {"symsol"} and set(table["family"]) == {"fam"}
    row = table[(table.layer_x == "e/2") & (table.layer_y == "mean")].set_index("metric")["score"]
    # float32 partial sums in a different order (16 x 16 block vs 1 x 1): within the 1e-5 contract
    assert row["cka"] == pytest.approx(linear_cka(a["e/2"], b["mean"]), abs=1e-6)
    assert row["procrustes"] == pytest.approx(procrustes_similarity(a["e/2"], b["mean"]), abs=1e-10)
    assert (table["n_examples"] == 40).all()


def test_each_snapshot_is_loaded_once_per_shard(tmp_path, monkeypatch):
    from vaetransfer import scoring

    for k in range(3):
        fake_dump(tmp_path / f"s{k}.npz", seed=k)
    loads = []
    real = scoring.load_activations

    def counting(path, layers=None):
        loads.extend((str(path), name) for name in layers)  # one layer at a time: bounded memory
        return real(path, layers)

    monkeypatch.setattr(scoring, "load_activations", counting)
    pairs = [(tmp_path / "s0.npz", tmp_path / "s1.npz"), (tmp_path / "s0.npz", tmp_path / "s2.npz"),
             (tmp_path / "s1.npz", tmp_path / "s2.npz")]
    score_pairs(pairs, ["cka"], "f")
    assert sorted(loads) == sorted((str(tmp_path / f"s{k}.npz"), name) for k in range(3) for name in LAYER_NAMES)


def test_pairs_on_different_examples_are_refused(tmp_path):
    fake_dump(tmp_path / "a.npz", seed=0, indices=range(40))
    fake_dump(tmp_path / "b.npz", seed=1, indices=range(1, 41))
    with pytest.raises(ValueError, match="different examples"):
        score_pairs([(tmp_path / "a.npz", tmp_path / "b.npz")], ["cka"], "f")


def test_unknown_metric_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cosine"):
        score_pairs([], ["cosine"], "f")


def test_aggregate_concatenates_and_enforces_schema(tmp_path):
    fake_dump(tmp_path / "a.npz", seed=0)
    fake_dump(tmp_path / "b.npz", seed=1)
    one = score_pairs([(tmp_path / "a.npz", tmp_path / "b.npz")], ["cka"], "f")
    two = score_pairs([(tmp_path / "b.npz", tmp_path / "a.npz")], ["cka"], "g")
    table = aggregate([one, two])
    assert len(table) == len(one) + len(two) and list(table.columns) == TABLE_COLUMNS
    assert table["seed_x"].dtype == np.int64 and table["hparam_x"].dtype == np.float64
    with pytest.raises(ValueError, match="lacks columns"):
        aggregate([one.drop(columns=["metric"])])
    assert aggregate([]).empty and list(aggregate([]).columns) == TABLE_COLUMNS
    # CKA is symmetric, so swapping the models transposes the layer matrix.
    m1 = one.pivot(index="layer_x", columns="layer_y", values="score")
    m2 = two.pivot(index="layer_x", columns="layer_y", values="score")
    assert np.allclose(m1.values, m2.T.values, atol=1e-12)


def test_near_zero_activations_are_zeroed_before_scoring(tmp_path):
    """|x| < 1e-7 becomes 0 (authors' prepare_activations): a layer of such values is constant
    (collapsed), so it is flagged and gets the documented score (0 against varying layers) instead
    of scoring noise; `constant="nan"` reproduces the authors' NaN."""
    arrays = fake_dump(tmp_path / "a.npz", seed=0)
    fake_dump(tmp_path / "tiny.npz", seed=0)
    with np.load(tmp_path / "tiny.npz") as z:
        stored = dict(z)
    rng = np.random.default_rng(1)
    stored["log_var"] = (rng.normal(size=arrays["log_var"].shape) * 1e-8).astype(np.float32)
    np.savez(tmp_path / "tiny.npz", **stored)
    pairs = [(tmp_path / "tiny.npz", tmp_path / "a.npz")]
    table = score_pairs(pairs, ["cka", "procrustes"], "f")
    collapsed = table[table.layer_x == "log_var"]
    assert collapsed["constant_x"].all() and not collapsed["constant_y"].any()
    assert (collapsed["score"] == 0.0).all()
    others = table[table.layer_x != "log_var"]
    assert not others["constant_x"].any() and (others["score"] > 0).all()
    nan_table = score_pairs(pairs, ["cka"], "f", constant="nan")
    assert nan_table[nan_table.layer_x == "log_var"]["score"].isna().all()
    assert nan_table[nan_table.layer_x == "mean"]["score"].notna().all()


def test_spilled_shard_scores_equal_in_memory_ones(tmp_path):
    """memory_mb=0 forces every prepared representation to disk (memory-mapped back): the same
    numbers, and the scratch directory is cleaned up afterwards."""
    for seed in range(3):
        fake_dump(tmp_path / f"s{seed}.npz", seed=seed)
    pairs = [(tmp_path / "s0.npz", tmp_path / "s0.npz"), (tmp_path / "s0.npz", tmp_path / "s1.npz"),
             (tmp_path / "s2.npz", tmp_path / "s1.npz")]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    in_memory = score_pairs(pairs, ["cka", "procrustes"], "f")
    spilled = score_pairs(pairs, ["cka", "procrustes"], "f", memory_mb=0, scratch=str(scratch))
    pd.testing.assert_frame_equal(in_memory, spilled, check_exact=False, atol=1e-12)
    assert list(scratch.iterdir()) == []
    # A snapshot against itself: unit diagonal, symmetric block.
    self_pair = in_memory[(in_memory.seed_x == 0) & (in_memory.seed_y == 0) & (in_memory.metric == "procrustes")]
    m = self_pair.pivot(index="layer_x", columns="layer_y", values="score")
    assert np.allclose(np.diag(m.values), 1.0) and np.allclose(m.values, m.values.T)


def test_aggregate_refuses_a_comparison_scored_twice(tmp_path):
    fake_dump(tmp_path / "a.npz", seed=0)
    fake_dump(tmp_path / "b.npz", seed=1)
    one = score_pairs([(tmp_path / "a.npz", tmp_path / "b.npz")], ["cka"], "f")
    assert aggregate([one]).equals(aggregate([one]))  # idempotent
    with pytest.raises(ValueError, match="several shards"):
        aggregate([one, one])
