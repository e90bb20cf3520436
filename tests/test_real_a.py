"""Preprocessing of the real dSprites, Cars3D and SmallNORB files (spec datasets.md §1-§3) on tiny
fixtures in the exact real formats (tests/fixtures_real_a.py)."""

from __future__ import annotations

import gzip
import io
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests import fixtures_real_a as fx
from vaetransfer.data import real
from vaetransfer.data.download import CHECKSUM_ALGORITHMS, Resource
from vaetransfer.data.procedural import dsprites_meta, generate_dsprites
from vaetransfer.data.store import load_factors, load_images, load_meta


def _run(name, files, tmp_path):
    out = tmp_path / "out"
    real.preprocess(name, files, out, tmp_path / "scratch")
    return load_images(out), load_factors(out), load_meta(out)


@pytest.mark.parametrize("name", ["dsprites", "cars3d", "smallnorb"])
def test_resources_declared(name):
    resources = real.resources(name)
    assert resources and all(isinstance(r, Resource) and r.dataset == name for r in resources)
    for r in resources:
        assert r.url.startswith("http") and r.url.endswith(r.filename)
        algo, digest = r.checksum.split(":")
        assert algo in CHECKSUM_ALGORITHMS and int(digest, 16) >= 0
        assert r.licence
    if name == "smallnorb":
        assert len(resources) == 6 and all(r.checksum.startswith("sha256:") and r.size for r in resources)


# ------------------------------------------------------------------------------------ dSprites
def test_dsprites(tmp_path):
    files = fx.make_dsprites_files(tmp_path / "src")
    images, factors, meta = _run("dsprites", files, tmp_path)
    expected_images, expected_classes = generate_dsprites(fx.DSPRITES_SUBSET)
    assert images.shape == (48, 64, 64, 1) and images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 255}
    np.testing.assert_array_equal(images, expected_images)
    assert list(factors.columns) == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    np.testing.assert_array_equal(factors.to_numpy(), expected_classes.to_numpy())
    # Interchangeable with procedural dSprites: same factors metadata.
    assert meta["factors"] == dsprites_meta(fx.DSPRITES_SUBSET)["factors"]
    assert {k: v["size"] for k, v in meta["factors"].items()} == {
        "shape": 3, "scale": 2, "orientation": 2, "pos_x": 2, "pos_y": 2}
    assert meta["name"] == "dsprites" and meta["channels"] == 1 and meta["n"] == 48
    assert not list((tmp_path / "scratch").glob("*.npy"))  # the memmap is removed


def _rewrite_npz(path, **changes):
    arrays = fx.dsprites_arrays()
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez_compressed(path, **arrays)


@pytest.mark.parametrize("change, message", [
    ({"imgs": None}, "missing key"),
    ({"latents_classes": np.zeros((48, 5), np.int64)}, "latents_classes"),
    ({"imgs": np.full((48, 64, 64), 255, np.uint8)}, "binary"),
    ({"imgs": np.zeros((47, 64, 64), np.uint8)}, "shape"),
    ({"metadata": np.array({"latents_names": ("a",), "latents_sizes": [1]}, dtype=object)}, "latents_names"),
])
def test_dsprites_malformed(tmp_path, change, message):
    path = fx.make_dsprites_files(tmp_path / "src")[fx.DSPRITES_FILENAME]
    _rewrite_npz(path, **change)
    with pytest.raises(ValueError, match=message) as err:
        _run("dsprites", {fx.DSPRITES_FILENAME: path}, tmp_path)
    assert str(path) in str(err.value)
    assert not (tmp_path / "out" / "meta.json").exists()


def test_dsprites_wrong_values_and_not_a_zip(tmp_path):
    path = fx.make_dsprites_files(tmp_path / "src")[fx.DSPRITES_FILENAME]
    arrays = fx.dsprites_arrays()
    arrays["latents_values"][5, 2] = 0.123  # a scale that does not match its class
    np.savez_compressed(path, **arrays)
    with pytest.raises(ValueError, match=r"latents_values\[5, 2\]"):
        _run("dsprites", {fx.DSPRITES_FILENAME: path}, tmp_path)
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="not a readable NPZ") as err:
        _run("dsprites", {fx.DSPRITES_FILENAME: path}, tmp_path)
    assert str(path) in str(err.value)


def test_dsprites_python2_file_and_chunks(tmp_path, monkeypatch):
    """The fixture is written like the real Python 2 file (long-int headers, numpy.core pickles):
    it reads without warnings, and streaming in many small chunks gives the same images."""
    from vaetransfer.data.real import dsprites
    files = fx.make_dsprites_files(tmp_path / "src")
    with zipfile.ZipFile(files[fx.DSPRITES_FILENAME]) as zf:
        assert b"(48L, 64L, 64L)" in zf.read("imgs.npy")[:128]
        assert b"numpy.core.multiarray" in zf.read("metadata.npy")
    monkeypatch.setattr(dsprites, "CHUNK", 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images, _, meta = _run("dsprites", files, tmp_path)
    np.testing.assert_array_equal(images, generate_dsprites(fx.DSPRITES_SUBSET)[0])
    assert meta["original"]["title"] == "dSprites dataset"


def test_dsprites_uncompressed_npz(tmp_path):
    """np.savez (stored, not deflated) members stream the same way."""
    path = tmp_path / fx.DSPRITES_FILENAME
    np.savez(path, **fx.dsprites_arrays())
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("imgs.npy").compress_type == zipfile.ZIP_STORED
    images, _, _ = _run("dsprites", {fx.DSPRITES_FILENAME: path}, tmp_path)
    assert images.shape == (48, 64, 64, 1) and images.max() == 255


# -------------------------------------------------------------------------------------- Cars3D
def test_cars3d(tmp_path):
    files = fx.make_cars3d_files(tmp_path / "src")
    images, factors, meta = _run("cars3d", files, tmp_path)
    names = sorted(fx.CARS3D_NAMES)
    n_obj = len(names)
    assert images.shape == (4 * 24 * n_obj, 64, 64, 3) and images.dtype == np.uint8
    assert list(factors.columns) == ["elevation", "azimuth", "object"]
    sizes = {k: v["size"] for k, v in meta["factors"].items()}
    assert sizes == {"elevation": 4, "azimuth": 24, "object": n_obj}
    assert meta["factors"]["object"]["names"] == names  # object ids from the sorted file names
    assert meta["complete"] is False and meta["list_txt_matches_sorted_names"] is True
    # Canonical order: object fastest, then azimuth, then elevation.
    rows = np.arange(len(factors))
    np.testing.assert_array_equal(factors["object"], rows % n_obj)
    np.testing.assert_array_equal(factors["azimuth"], (rows // n_obj) % 24)
    np.testing.assert_array_equal(factors["elevation"], rows // (24 * n_obj))
    assert factors.groupby(["object", "elevation", "azimuth"]).size().eq(1).all()
    for row in [0, 1, 2, 50, 151, len(factors) - 1]:
        el, az, obj = (int(factors[c][row]) for c in ("elevation", "azimuth", "object"))
        view = Image.fromarray(fx.cars3d_view(names[obj], az, el))
        expected = np.asarray(view.resize((64, 64), Image.LANCZOS))  # = thumbnail for 128 -> 64
        np.testing.assert_array_equal(images[row], expected)
        assert images[row, 0, 0].tolist() == [int(names[obj].split("_")[1]) * 2, 10 * az, 40 * el + 20]
    assert not (tmp_path / "scratch" / "cars3d_mat").exists()


def test_cars3d_malformed_member(tmp_path):
    mats = {"car_001_mesh": fx.mat_bytes({"im": fx.cars3d_im("car_001_mesh")}),
            "car_002_mesh": fx.mat_bytes({"mask": np.zeros((4, 4), np.uint8)})}
    path = fx.make_cars3d_tar(tmp_path / fx.CARS3D_FILENAME, mats, list(mats))
    with pytest.raises(ValueError, match="has no variable 'im'") as err:
        _run("cars3d", {fx.CARS3D_FILENAME: path}, tmp_path)
    assert "car_002_mesh.mat" in str(err.value) and str(path) in str(err.value)
    mats["car_002_mesh"] = fx.mat_bytes({"im": np.zeros((128, 128, 3, 24, 3), np.uint8)})
    fx.make_cars3d_tar(path, mats, list(mats))
    with pytest.raises(ValueError, match="'im' must be uint8") as err:
        _run("cars3d", {fx.CARS3D_FILENAME: path}, tmp_path)
    assert "car_002_mesh.mat" in str(err.value)
    mats["car_002_mesh"] = b"MATLAB 5.0 garbage"
    fx.make_cars3d_tar(path, mats, list(mats))
    with pytest.raises(ValueError, match="not a readable MATLAB file"):
        _run("cars3d", {fx.CARS3D_FILENAME: path}, tmp_path)
    assert not (tmp_path / "out" / "meta.json").exists()


def test_cars3d_bad_archive(tmp_path):
    path = tmp_path / fx.CARS3D_FILENAME
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match="not a readable .tar.gz") as err:
        _run("cars3d", {fx.CARS3D_FILENAME: path}, tmp_path)
    assert str(path) in str(err.value)
    fx.make_cars3d_tar(path, {}, [])
    with pytest.raises(ValueError, match="holds no cars"):
        _run("cars3d", {fx.CARS3D_FILENAME: path}, tmp_path)


# ----------------------------------------------------------------------------------- SmallNORB
def test_smallnorb(tmp_path):
    files = fx.make_smallnorb_files(tmp_path / "src")
    assert sorted(files) == sorted(r.filename for r in real.resources("smallnorb"))
    images, factors, meta = _run("smallnorb", files, tmp_path)
    labels = np.concatenate([fx.smallnorb_labels("training"), fx.smallnorb_labels("testing")])
    assert images.shape == (9, 64, 64, 1) and images.dtype == np.uint8
    assert list(factors.columns) == ["category", "instance", "elevation", "azimuth", "lighting"]
    np.testing.assert_array_equal(factors["category"], labels[:, 0])
    np.testing.assert_array_equal(factors["instance"], labels[:, 1])
    np.testing.assert_array_equal(factors["elevation"], labels[:, 2])
    np.testing.assert_array_equal(factors["azimuth"], labels[:, 3] // 2)
    np.testing.assert_array_equal(factors["lighting"], labels[:, 4])
    for row, label in enumerate(labels):  # each image carries its own labels; first camera
        expected = Image.fromarray(fx.smallnorb_pair(label)[0]).resize((64, 64), Image.LANCZOS)
        np.testing.assert_array_equal(images[row, :, :, 0], np.asarray(expected))
    assert {k: v["size"] for k, v in meta["factors"].items()} == {
        "category": 5, "instance": 10, "elevation": 9, "azimuth": 18, "lighting": 6}
    assert meta["factors"]["elevation"]["values"][-1] == 70
    assert meta["factors"]["azimuth"]["values"][17] == 340
    assert meta["factors"]["category"]["names"][4] == "car"
    assert meta["splits"] == {"training": [0, 6], "testing": [6, 9]} and meta["complete"] is False
    assert not list((tmp_path / "scratch").glob("*.npy"))


def _regzip(path, payload):
    with gzip.open(path, "wb") as fh:
        fh.write(payload)


def test_smallnorb_malformed(tmp_path):
    files = fx.make_smallnorb_files(tmp_path / "src")
    dat = files[fx.smallnorb_filename("testing", "dat")]
    good = gzip.decompress(dat.read_bytes())
    cases = [
        (b"\x00\x00\x00\x00" + good[4:], "bad magic number"),
        (good[:-100], "truncated"),
        (good + b"\x00", "bytes after"),
        (fx.lecun_bytes(np.zeros((3, 2, 64, 64), np.uint8)), "shape"),
    ]
    for payload, message in cases:
        _regzip(dat, payload)
        with pytest.raises(ValueError, match=message) as err:
            _run("smallnorb", files, tmp_path)
        assert str(dat) in str(err.value)
        assert not (tmp_path / "out" / "meta.json").exists()
    _regzip(dat, good)
    info = files[fx.smallnorb_filename("training", "info")]
    bad = fx.smallnorb_labels("training")[:, 1:].copy()
    bad[2, 2] = 7  # odd raw azimuth
    _regzip(info, fx.lecun_bytes(bad))
    with pytest.raises(ValueError, match="azimuth 7 is odd") as err:
        _run("smallnorb", files, tmp_path)
    assert str(info) in str(err.value)
    cat = files[fx.smallnorb_filename("training", "cat")]
    _regzip(cat, fx.lecun_bytes(np.array([0, 1, 2], "<i4")))
    with pytest.raises(ValueError, match="rows"):
        _run("smallnorb", files, tmp_path)
    del files[fx.smallnorb_filename("testing", "cat")]
    with pytest.raises(ValueError, match="missing file"):
        _run("smallnorb", files, tmp_path)


def test_smallnorb_chunks(tmp_path, monkeypatch):
    from vaetransfer.data.real import smallnorb
    files = fx.make_smallnorb_files(tmp_path / "src")
    whole, _, _ = _run("smallnorb", files, tmp_path)
    whole = np.array(whole)
    monkeypatch.setattr(smallnorb, "CHUNK", 2)
    chunked, _, _ = _run("smallnorb", files, tmp_path)
    np.testing.assert_array_equal(chunked, whole)


def test_smallnorb_plain_files_accepted(tmp_path):
    """Files gunzipped by hand (as the authors keep them) read the same."""
    files = fx.make_smallnorb_files(tmp_path / "src")
    for path in files.values():
        path.write_bytes(gzip.decompress(path.read_bytes()))
    images, factors, _ = _run("smallnorb", files, tmp_path)
    assert images.shape == (9, 64, 64, 1) and len(factors) == 9


def test_lecun_header_roundtrip():
    from vaetransfer.data.real.smallnorb import read_header
    dtype, shape = read_header(io.BytesIO(fx.lecun_bytes(np.zeros((7, 4), "<i4"))), "x")
    assert dtype == np.dtype("<i4") and shape == (7, 4)


@pytest.mark.parametrize("name", ["dsprites", "cars3d", "smallnorb"])
def test_missing_file_named(tmp_path, name):
    with pytest.raises(ValueError, match="missing file"):
        _run(name, {}, tmp_path)
