"""Activation dumps: reproducible, self-describing, atomic (spec reference.md §1.4, aesthetics.md §8.10-8.11)."""

import numpy as np
import pytest
import torch

import vaetransfer.io
from vaetransfer.activations import (
    compute_activations,
    load_activations,
    save_activations,
    sidecar_path,
)
from vaetransfer.io import read_json
from vaetransfer.layers import LAYER_NAMES
from vaetransfer.models import ConvVAE, images_to_tensor

META = {
    "model": {"dataset": "dsprites", "objective": "beta_vae", "hparam_name": "beta",
              "hparam": 1.0, "seed": 0, "step": 100},
    "eval_dataset": "symsol",
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ConvVAE(channels=1)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(10, 64, 64, 1), dtype=np.uint8)


@pytest.fixture(scope="module")
def acts(model, images):
    return compute_activations(model, images, batch_size=4, seed=5)


def test_shapes_order_and_dtype(acts, images):
    assert tuple(acts) == LAYER_NAMES
    for name, array in acts.items():
        assert array.dtype == np.float32 and array.ndim == 2 and array.shape[0] == 10, name
    assert acts["e/1"].shape[1] == 32768 and acts["d/6"].shape[1] == 4096
    np.testing.assert_array_equal(acts["input"], images.reshape(10, -1) / np.float32(255))


def test_batching_matches_one_forward_pass(model, images, acts):
    """Each batch of 4 lands in the right rows; deterministic layers agree with a single pass."""
    with torch.no_grad():
        mean, _ = model.eval().encode(images_to_tensor(images, "cpu"))
    np.testing.assert_allclose(acts["mean"], mean.numpy(), rtol=1e-5, atol=1e-6)


def test_reproducible_with_seed_and_stochastic_without(model, images, acts):
    again = compute_activations(model, images, batch_size=4, seed=5)
    other = compute_activations(model, images, batch_size=4, seed=6)
    for name in LAYER_NAMES:
        np.testing.assert_array_equal(acts[name], again[name], err_msg=name)
    np.testing.assert_array_equal(acts["mean"], other["mean"])  # the encoder is deterministic
    assert not np.array_equal(acts["sampled"], other["sampled"])
    assert not np.array_equal(acts["d/6"], other["d/6"])


def test_runs_in_eval_mode_without_grad(model, images):
    model.train()
    out = compute_activations(model, images[:2], seed=0)
    assert not model.training
    assert all(isinstance(a, np.ndarray) for a in out.values())


def test_save_writes_npz_and_sidecar(tmp_path, acts):
    path = tmp_path / "acts.npz"
    indices = list(range(100, 110))
    save_activations(path, acts, {**META, "example_indices": np.array(indices)})
    sidecar = read_json(sidecar_path(path))
    assert sidecar_path(path) == tmp_path / "acts.json"
    assert [layer["name"] for layer in sidecar["layers"]] == list(LAYER_NAMES)
    assert [layer["shape"] for layer in sidecar["layers"]] == [list(acts[n].shape) for n in LAYER_NAMES]
    assert sidecar["dtype"] == "float32" and sidecar["n_examples"] == 10
    assert sidecar["example_indices"] == indices
    assert sidecar["model"] == META["model"] and sidecar["eval_dataset"] == "symsol"
    with np.load(path) as npz:
        assert set(npz.files) == set(LAYER_NAMES) | {"example_indices"}
        np.testing.assert_array_equal(npz["example_indices"], indices)
        assert npz["example_indices"].dtype == np.int64


def test_round_trip_and_layer_selection(tmp_path, acts):
    path = tmp_path / "acts.npz"
    save_activations(path, acts, {**META, "example_indices": list(range(10))})
    arrays, meta = load_activations(path)
    assert tuple(arrays) == LAYER_NAMES
    for name in LAYER_NAMES:
        np.testing.assert_array_equal(arrays[name], acts[name], err_msg=name)
    assert meta["model"] == META["model"]
    subset, _ = load_activations(path, layers=["d/1", "input", "mean"])
    assert list(subset) == ["input", "mean", "d/1"]  # LAYER_NAMES order, not request order


def test_missing_layer_names_file_and_layer(tmp_path, acts):
    path = tmp_path / "partial.npz"
    save_activations(path, {n: acts[n] for n in ("input", "mean")}, META)
    arrays, _ = load_activations(path)
    assert list(arrays) == ["input", "mean"]
    with pytest.raises(KeyError, match=r"partial\.npz.*'d/6'"):
        load_activations(path, layers=["mean", "d/6"])


@pytest.mark.parametrize(
    "bad_arrays, bad_meta",
    [
        ({"conv1": np.zeros((10, 3), np.float32)}, {}),  # unknown layer name
        ({"input": np.zeros((10, 3), np.float32), "mean": np.zeros((9, 3), np.float32)}, {}),
        ({"input": np.zeros((10, 3), np.float32)}, {"example_indices": [1, 2]}),
        ({"input": np.zeros((10, 3), np.float32)}, {"layers": []}),  # reserved key
    ],
)
def test_invalid_inputs_raise_before_writing(tmp_path, bad_arrays, bad_meta):
    with pytest.raises(ValueError):
        save_activations(tmp_path / "bad.npz", bad_arrays, bad_meta)
    assert list(tmp_path.iterdir()) == []


def test_unserialisable_meta_leaves_no_file(tmp_path, acts):
    with pytest.raises(TypeError):
        save_activations(tmp_path / "a.npz", {"mean": acts["mean"]}, {"model": object()})
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_leaves_no_partial_file(tmp_path, acts, monkeypatch):
    path = tmp_path / "acts.npz"
    save_activations(path, {"mean": acts["mean"]}, META)
    before = path.read_bytes(), sidecar_path(path).read_text()

    def half_written(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(vaetransfer.io.np, "savez", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_activations(path, acts, META)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts.json", "acts.npz"]  # no temp files
    assert (path.read_bytes(), sidecar_path(path).read_text()) == before  # old dump intact
