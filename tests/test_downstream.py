"""Downstream classification, Table 1 / Appendix A (spec reference.md §6.3)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from vaetransfer import downstream as ds
from vaetransfer.data.store import split_indices, write_dataset
from vaetransfer.models import ConvVAE, images_to_tensor
from vaetransfer.train import TrainConfig, save_checkpoint


def noise_images(n, seed=0, channels=1):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 64, 64, channels), dtype=np.uint8)


def write_checkpoint(path, model, dataset):
    cfg = TrainConfig(dataset=dataset, objective="beta_vae", hparam=1.0, seed=0, steps=1, checkpoint_steps=[1])
    save_checkpoint(path, model, torch.optim.Adam(model.parameters()), 1, cfg)


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return ConvVAE(channels=1, latent_dim=10).eval()


def test_mean_representation_matches_encode_and_is_batch_independent(vae):
    images = noise_images(40)
    idx = np.array([7, 3, 39, 0, 12, 12, 25])
    with torch.no_grad():
        expected = vae.encode(images_to_tensor(images[idx]))[0].numpy()
    for batch_size in (1, 3, 512):
        got = ds.mean_representation(vae, images, idx, batch_size=batch_size)
        assert got.dtype == np.float32 and got.shape == (len(idx), 10)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_split_sizes_are_documented():
    meta = {"n": 1000}
    train, test, rec = ds.split_for_downstream(meta)
    ref_train, ref_test = split_indices(1000, 0, 0.1)
    assert np.array_equal(train, ref_train) and np.array_equal(test, ref_test)
    assert rec["sample_scheme"] == "full" and (rec["n_train"], rec["n_test"]) == (900, 100)
    assert ds.SAMPLE_PRESETS["jan-mar-2023"] == (9984, 4992)
    train, test, rec = ds.split_for_downstream(meta, max_train=50, max_test=500, rng_seed=3)
    assert (len(train), len(test), rec["n_train"], rec["n_test"]) == (50, 100, 50, 100)
    assert set(train) <= set(ref_train) and rec["max_train"] == 50 and rec["sample_scheme"] == "custom"
    with pytest.raises(ValueError, match="max_train"):
        ds.split_for_downstream(meta, max_train=0)


def test_deterministic_label_is_perfect_and_random_label_is_chance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 10)).astype(np.float32)
    x[:, 4] = rng.integers(0, 4, 3000) + rng.uniform(0, 0.5, 3000)  # four classes, gaps of 0.5
    y = np.floor(x[:, 4]).astype(int)
    res = ds.evaluate_label(x[:2000], y[:2000], x[2000:], y[2000:])
    assert res == {"train_accuracy": 1.0, "test_accuracy": 1.0, "n_train": 2000, "n_test": 1000, "n_classes": 4}
    noise = rng.integers(0, 2, 3000)
    res = ds.evaluate_label(x[:2000], noise[:2000], x[2000:], noise[2000:])
    assert abs(res["test_accuracy"] - 0.5) < 0.06 and res["train_accuracy"] > res["test_accuracy"]
    with pytest.raises(ValueError, match="class"):
        ds.evaluate_label(x[:10], np.zeros(10), x[10:20], np.zeros(10))


def rows_for(values, role="target", source="dsprites", target="dsprites"):
    return [{"role": role, "source_dataset": source, "target_dataset": target, "seed": 0, "label": f"f{i}",
             "n_classes": 3, "n_train": 90, "n_test": 10, "train_accuracy": 1.0, "test_accuracy": v}
            for i, v in enumerate(values)]


def test_table1_is_unweighted_mean_and_markdown_renders():
    per_label = ds.accuracy_table(rows_for([0.72, 0.53, 0.11, 0.31, 0.31])
                                  + rows_for([0.5, 0.3], "source", "symsol", "dsprites"))
    assert len(per_label) == 7 and not per_label.duplicated(["role", "source_dataset", "label"]).any()
    t1 = ds.table1(per_label).set_index("role")
    assert t1.loc["target", "test_accuracy"] == pytest.approx(0.396)
    assert t1.loc["source", "test_accuracy"] == pytest.approx(0.4) and t1.loc["target", "n_labels"] == 5
    md = ds.to_markdown(per_label).splitlines()
    assert len(md) == 2 + len(per_label) and md[0].startswith("| role |") and set(md[1]) <= set("|-: ")
    assert md[4].endswith("| 0.720 |")  # sorted: the 2 source rows, then target f0
    with pytest.raises(ValueError, match="duplicate"):
        ds.accuracy_table(rows_for([0.1, 0.2]) * 2)


def test_end_to_end_one_label_job_and_collect(tmp_path, vae):
    images = noise_images(600, seed=1)
    coord = ds.mean_representation(vae, images, np.arange(600))[:, 2]
    lo, hi = np.quantile(coord, [0.4, 0.6])
    keep = (coord < lo) | (coord > hi)  # a margin around the threshold
    factors = pd.DataFrame({"side": (coord[keep] > hi).astype(np.int64), "angle": np.linspace(0, 1, keep.sum())})
    meta = {"name": "toy", "factors": {"side": {"size": 2, "values": [0, 1]},
                                       "angle": {"size": 0, "values": None, "continuous": True}}}
    write_dataset(tmp_path / "toy", images[keep], factors, meta)
    write_checkpoint(tmp_path / "toy.pt", vae, "toy")
    write_checkpoint(tmp_path / "other.pt", vae, "other")
    info = ds.encode_target(tmp_path / "toy.pt", tmp_path / "toy", tmp_path / "feat.npz", batch_size=64)
    assert info["n_train"] + info["n_test"] == keep.sum() and info["sample_scheme"] == "full"
    row = ds.run_label(tmp_path / "feat.npz", tmp_path / "toy", "side", "target", tmp_path / "t.parquet")
    assert row["test_accuracy"] == 1.0 and row["n_test"] == info["n_test"] and row["source_dataset"] == "toy"
    ds.encode_target(tmp_path / "other.pt", tmp_path / "toy", tmp_path / "f2.npz", max_train=100, max_test=20)
    with pytest.raises(ValueError, match="role 'target'"):
        ds.run_label(tmp_path / "f2.npz", tmp_path / "toy", "side", "target", tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="not a discrete label"):
        ds.run_label(tmp_path / "f2.npz", tmp_path / "toy", "angle", "source", tmp_path / "x.parquet")
    row2 = ds.run_label(tmp_path / "f2.npz", tmp_path / "toy", "side", "source", tmp_path / "s.parquet")
    assert (row2["n_train"], row2["n_test"], row2["max_train"]) == (100, 20, 100)
    out = {k: tmp_path / f"out.{k}" for k in ("a", "b", "c", "d")}
    per_label, t1 = ds.collect([tmp_path / "t.parquet", tmp_path / "s.parquet"], *out.values())
    assert len(per_label) == 2 and len(t1) == 2 and pd.read_parquet(out["b"]).shape[0] == 2
    assert len(out["d"].read_text().strip().splitlines()) == 2 + 2 + 2  # title, blank, header, sep, rows


def test_label_less_dataset_raises(tmp_path, vae):
    factors = pd.DataFrame({"q": np.linspace(0, 1, 30)})
    write_dataset(tmp_path / "cont", noise_images(30), factors,
                  {"name": "cont", "factors": {"q": {"size": 0, "values": None}}})
    write_checkpoint(tmp_path / "c.pt", vae, "cont")
    ds.encode_target(tmp_path / "c.pt", tmp_path / "cont", tmp_path / "f.npz")
    with pytest.raises(ValueError, match="no discrete factor"):
        ds.run_label(tmp_path / "f.npz", tmp_path / "cont", "q", "target", tmp_path / "x.parquet")
    assert json.loads(str(np.load(tmp_path / "f.npz")["info"]))["n_test"] == 3
