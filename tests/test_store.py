"""The on-disk dataset format and the index helpers (vaetransfer.data.store)."""

import math

import numpy as np
import pandas as pd
import pytest

from vaetransfer.data import store
from vaetransfer.data.store import (
    evaluation_indices,
    load_factors,
    load_images,
    load_meta,
    split_indices,
    write_dataset,
)


def make_dataset(n=12, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 64, 64, channels), dtype=np.uint8)
    factors = pd.DataFrame({"b": rng.integers(0, 3, n), "a": rng.random(n)})
    meta = {
        "name": "toy",
        "factors": {"a": {"size": 0, "values": None}, "b": {"size": 3, "values": ["x", "y", "z"]}},
        "source": "test",
        "version": 2,
        "params": {"seed": seed},
    }
    return images, factors, meta


def snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip(tmp_path, channels):
    images, factors, meta = make_dataset(channels=channels)
    write_dataset(tmp_path / "ds", images, factors, meta)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == [
        "factors.parquet",
        "images.npy",
        "meta.json",
    ]
    loaded = load_images(tmp_path / "ds")
    assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
    np.testing.assert_array_equal(loaded, images)
    in_memory = load_images(tmp_path / "ds", mmap=False)
    assert not isinstance(in_memory, np.memmap)
    np.testing.assert_array_equal(in_memory, images)
    # Columns come back in meta["factors"] order.
    pd.testing.assert_frame_equal(load_factors(tmp_path / "ds"), factors[["a", "b"]])
    got = load_meta(tmp_path / "ds")
    assert got["n"] == 12 and got["channels"] == channels
    assert (got["height"], got["width"], got["pixel_max"]) == (64, 64, 255)
    assert got["factors"] == meta["factors"] and got["params"] == {"seed": 0}
    assert (got["name"], got["source"], got["version"]) == ("toy", "test", 2)


def test_defaults_and_meta_not_mutated(tmp_path):
    images, factors, meta = make_dataset()
    del meta["source"], meta["version"]
    before = dict(meta)
    write_dataset(tmp_path / "ds", images, factors, meta)
    assert meta == before
    got = load_meta(tmp_path / "ds")
    assert got["source"] == "unspecified" and got["version"] == 1


def test_overwrite_replaces_dataset(tmp_path):
    write_dataset(tmp_path / "ds", *make_dataset(n=12, seed=0))
    images, factors, meta = make_dataset(n=5, seed=1)
    write_dataset(tmp_path / "ds", images, factors, meta)
    np.testing.assert_array_equal(load_images(tmp_path / "ds"), images)
    assert load_meta(tmp_path / "ds")["n"] == 5
    assert len(list((tmp_path / "ds").iterdir())) == 3


def _bad_inputs():
    images, factors, meta = make_dataset()
    yield "dtype", (images.astype(np.float32), factors, meta)
    yield "shape", (images[:, :32], factors, meta)
    yield "shape", (images[..., 0], factors, meta)
    yield "shape", (np.concatenate([images, images], axis=3), factors, meta)
    yield "rows", (images, factors.iloc[:5], meta)
    yield "do not match", (images, factors.rename(columns={"a": "c"}), meta)
    yield "do not match", (images, factors[["a"]], meta)
    yield "name", (images, factors, {**meta, "name": ""})
    yield "size", (
        images,
        factors,
        {**meta, "factors": {"a": {"values": None}, "b": {"size": 3, "values": None}}},
    )
    yield "values", (
        images,
        factors,
        {**meta, "factors": {"a": {"size": 0, "values": "x"}, "b": {"size": 3}}},
    )
    yield "JSON", (images, factors, {**meta, "params": {"x": object()}})
    yield "DataFrame", (images, factors.to_dict(), meta)


@pytest.mark.parametrize("match, args", list(_bad_inputs()))
def test_bad_input_writes_nothing_and_keeps_previous(tmp_path, match, args):
    with pytest.raises((ValueError, TypeError), match=match):
        write_dataset(tmp_path / "new", *args)
    assert not (tmp_path / "new").exists()
    write_dataset(tmp_path / "old", *make_dataset(seed=5))
    before = snapshot(tmp_path / "old")
    with pytest.raises((ValueError, TypeError), match=match):
        write_dataset(tmp_path / "old", *args)
    assert snapshot(tmp_path / "old") == before


def test_failure_midway_leaves_previous_dataset_intact(tmp_path, monkeypatch):
    write_dataset(tmp_path / "ds", *make_dataset(seed=3))
    before = snapshot(tmp_path / "ds")

    def broken(path, frame):  # images are already staged when the factors write fails
        raise OSError("disk full")

    monkeypatch.setattr(store, "write_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        write_dataset(tmp_path / "ds", *make_dataset(seed=4))
    assert snapshot(tmp_path / "ds") == before  # untouched, and no temporaries left behind
    with pytest.raises(OSError):
        write_dataset(tmp_path / "fresh", *make_dataset(seed=4))
    assert not (tmp_path / "fresh").exists()


def test_missing_files_raise_naming_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_images(tmp_path / "nope")
    write_dataset(tmp_path / "ds", *make_dataset())
    (tmp_path / "ds" / "factors.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"ds/factors\.parquet"):
        load_factors(tmp_path / "ds")
    # Without meta.json the dataset counts as incomplete, even though images.npy is there.
    (tmp_path / "ds" / "meta.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"ds/meta\.json"):
        load_images(tmp_path / "ds")
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_meta(tmp_path / "ds")


# --- index helpers ------------------------------------------------------------------------------


def test_evaluation_indices():
    idx = evaluation_indices(1000, 100, seed=3)
    assert idx.dtype == np.int64 and len(idx) == 100
    assert (np.diff(idx) > 0).all() and idx[0] >= 0 and idx[-1] < 1000
    np.testing.assert_array_equal(idx, evaluation_indices(1000, 100, seed=3))
    assert not np.array_equal(idx, evaluation_indices(1000, 100, seed=4))
    np.testing.assert_array_equal(evaluation_indices(50, 100, seed=0), np.arange(50))
    # The same draw as default_rng(seed).choice, documented so others can reproduce it.
    expected = np.sort(np.random.default_rng(3).choice(1000, 100, replace=False))
    np.testing.assert_array_equal(idx, expected)


@pytest.mark.parametrize("n_total, n", [(10, 0), (10, -1), (0, 5)])
def test_evaluation_indices_rejects_bad_sizes(n_total, n):
    with pytest.raises(ValueError):
        evaluation_indices(n_total, n, seed=0)


@pytest.mark.parametrize("n_total, fraction", [(1000, 0.1), (30, 0.1), (17, 0.2), (2, 0.1)])
def test_split_indices_partition(n_total, fraction):
    train, val = split_indices(n_total, seed=1, validation_fraction=fraction)
    assert train.dtype == val.dtype == np.int64
    assert len(val) == math.ceil(round(fraction * n_total, 9))
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n_total))
    assert (np.diff(val) > 0).all()


def test_split_indices_properties():
    assert len(split_indices(30, seed=0)[1]) == 3  # not 4: 0.1 * 30 = 3.0000000000000004
    train, val = split_indices(1000, seed=2)
    t2, v2 = split_indices(1000, seed=2)
    np.testing.assert_array_equal(train, t2)
    np.testing.assert_array_equal(val, v2)
    assert not (np.diff(train) > 0).all()  # train order shuffled once
    assert not np.array_equal(val, split_indices(1000, seed=3)[1])
    # Unlike the authors' sampler, the last index can be held out.
    assert any(9 in split_indices(10, seed=s)[1] for s in range(50))


@pytest.mark.parametrize("n_total, fraction", [(10, 0.0), (10, 1.0), (1, 0.1), (0, 0.1)])
def test_split_indices_rejects_bad_arguments(n_total, fraction):
    with pytest.raises(ValueError):
        split_indices(n_total, seed=0, validation_fraction=fraction)
