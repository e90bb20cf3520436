"""Preprocessing of the real Symsol_reduced and CelebA files (spec datasets.md §4, §5) on tiny
synthetic stand-ins (tests/fixtures_real_b.py): layout, dtype, pixel range, letterbox, labels, errors."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageOps

from .fixtures_real_b import (
    CELEBA_ATTRIBUTES,
    SYMSOL_NAMES,
    attribute_text,
    celeba_attributes,
    celeba_pixels,
    jpeg_bytes,
    make_celeba_files,
    make_symsol_files,
    symsol_members,
    symsol_pixels,
)
from vaetransfer.data import store
from vaetransfer.data.real import preprocess, resources
from vaetransfer.data.real import celeba as celeba_module
from vaetransfer.data.symsol import SYMSOL_SHAPES


def _run(name, files, tmp_path):
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    preprocess(name, files, out, scratch)
    assert not list(scratch.iterdir()), "the memory-mapped buffer must be removed"
    return store.load_images(out), store.load_factors(out), store.load_meta(out)


# ---------------------------------------------------------------- Symsol_reduced


def test_symsol_resources():
    (res,) = resources("symsol")
    assert res.filename == "symsol_reduced.zip"
    assert res.url == "https://data.kent.ac.uk/436/1/symsol_reduced.zip"
    assert res.checksum is None and not res.gdrive and res.licence


def test_symsol_layout_labels_and_pixels(tmp_path):
    files = make_symsol_files(tmp_path / "in", per_shape=3)
    images, factors, meta = _run("symsol", files, tmp_path)
    members = sorted(symsol_members(3))
    assert images.shape == (15, 64, 64, 1) and images.dtype == np.uint8
    assert list(factors.columns) == ["shape"]
    assert factors["shape"].tolist() == [s for _, s in members]
    for i, (member, _) in enumerate(members):  # sorted member order, pixels unchanged
        np.testing.assert_array_equal(images[i, :, :, 0], symsol_pixels(member))
    assert meta["factors"]["shape"]["size"] == 5
    assert meta["factors"]["shape"]["values"] == list(SYMSOL_NAMES)
    assert meta["factors"]["shape"]["long_names"] == list(SYMSOL_SHAPES)  # procedural renderer's order
    assert meta["class_counts"] == {s: 3 for s in SYMSOL_NAMES}
    assert meta["n"] == 15 and meta["channels"] == 1 and meta["converted_modes"] == {}
    assert 0 <= images.min() and images.max() <= 255 and images.max() > 0


def test_symsol_ignores_macos_forks_and_converts_non_grey(tmp_path):
    pixels = symsol_pixels("x")
    extra = {
        "__MACOSX/symsol_reduced/._tet_00000.png": b"junk",
        "symsol_reduced/readme.txt": b"not an image",
        "symsol_reduced/icosa_99999.png": _png_rgb(pixels),
    }
    images, factors, meta = _run("symsol", make_symsol_files(tmp_path / "in", 1, extra), tmp_path)
    assert len(images) == 6 and meta["converted_modes"] == {"RGB": 1}
    last = sorted(m for m, _ in symsol_members(1)) + ["symsol_reduced/icosa_99999.png"]
    i = sorted(last).index("symsol_reduced/icosa_99999.png")
    assert factors["shape"][i] == 2
    np.testing.assert_array_equal(images[i, :, :, 0], pixels)  # grey RGB converts back exactly


def _png_rgb(pixels):
    buf = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"symsol_reduced/sphere_00001.png": b""}, "sphere_00001.png: no shape name"),
        ({"symsol_reduced/cone_77777.png": b"garbage"}, "cone_77777.png: not a readable PNG"),
    ],
)
def test_symsol_bad_members_name_the_member(tmp_path, extra, message):
    files = make_symsol_files(tmp_path / "in", 1, extra)
    with pytest.raises(ValueError, match=message):
        preprocess("symsol", files, tmp_path / "out", tmp_path / "scratch")
    assert not (tmp_path / "out" / "meta.json").exists()


def test_symsol_wrong_size_and_empty_archive(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(buf, format="PNG")
    files = make_symsol_files(tmp_path / "in", 1, {"symsol_reduced/cube_55555.png": buf.getvalue()})
    with pytest.raises(ValueError, match=r"cube_55555.png: image is 64x32, expected 64x64"):
        preprocess("symsol", files, tmp_path / "out", tmp_path / "scratch")
    empty = tmp_path / "empty" / "symsol_reduced.zip"
    empty.parent.mkdir()
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("symsol_reduced/", b"")
    with pytest.raises(ValueError, match=r"symsol_reduced.zip: no PNG images"):
        preprocess("symsol", {"symsol_reduced.zip": empty}, tmp_path / "out", tmp_path / "scratch")
    with pytest.raises(ValueError, match="symsol_reduced.zip missing"):
        preprocess("symsol", {}, tmp_path / "out", tmp_path / "scratch")


# ---------------------------------------------------------------- CelebA


def test_celeba_resources_and_header():
    by_name = {r.filename: r for r in resources("celeba")}
    assert set(by_name) == {"img_align_celeba.zip", "list_attr_celeba.txt"}
    assert by_name["img_align_celeba.zip"].checksum == (
        "sha256:46fb89443c578308acf364d7d379fe1b9efb793042c0af734b6112e4fd3a8c74")
    assert by_name["img_align_celeba.zip"].size == 1_443_490_838
    assert by_name["list_attr_celeba.txt"].size == 26_721_026
    for res in by_name.values():
        assert res.gdrive and "non-commercial" in res.licence and "drive.google.com" in res.url
    # spec §0: the paper's eight attributes at these 0-based header positions
    spec_index = {"Attractive": 2, "Blond_Hair": 9, "Heavy_Makeup": 18, "High_Cheekbones": 19, "Male": 20,
                  "Smiling": 31, "Wavy_Hair": 33, "Wearing_Lipstick": 36}
    assert len(CELEBA_ATTRIBUTES) == 40
    assert {a: CELEBA_ATTRIBUTES.index(a) for a in celeba_module.PAPER_ATTRIBUTES} == spec_index


def test_celeba_images_letterbox_and_attributes(tmp_path):
    n = 7
    images, factors, meta = _run("celeba", make_celeba_files(tmp_path / "in", n), tmp_path)
    assert images.shape == (n, 64, 64, 3) and images.dtype == np.uint8
    assert meta["n"] == n and meta["channels"] == 3
    # 178x218 -> thumbnail 52x64 -> 6 px black bars left and right, content in between
    assert (images[:, :, :6] == 0).all() and (images[:, :, 58:] == 0).all()
    assert (images[:, :, 6:58].reshape(n, -1).min(axis=1) > 0).all()
    for i in range(n):  # row i is 00000{i+1}.jpg although the zip lists them in reverse
        with Image.open(io.BytesIO(jpeg_bytes(celeba_pixels(i + 1)))) as img:
            img.thumbnail((64, 64))
            assert img.size == (52, 64)
            expected = np.asarray(ImageOps.pad(img, (64, 64)))
        np.testing.assert_array_equal(images[i], expected)
    assert list(factors.columns) == list(CELEBA_ATTRIBUTES)
    raw = celeba_attributes(n)
    np.testing.assert_array_equal(factors.to_numpy(), (raw == 1).astype(int))
    assert set(np.unique(factors.to_numpy())) <= {0, 1}
    assert all(meta["factors"][a] == {"size": 2, "values": [-1, 1]} for a in CELEBA_ATTRIBUTES)
    assert meta["paper_attributes"] == list(celeba_module.PAPER_ATTRIBUTES)


def test_celeba_rows_matched_by_file_name(tmp_path):
    files = make_celeba_files(tmp_path / "in", 4)
    names = [f"{i:06d}.jpg" for i in range(1, 5)]
    raw = celeba_attributes(4)
    order = [2, 0, 3, 1]  # shuffle the attribute rows
    files["list_attr_celeba.txt"].write_text(attribute_text([names[k] for k in order], raw[order]))
    _, factors, _ = _run("celeba", files, tmp_path)
    np.testing.assert_array_equal(factors.to_numpy(), (raw == 1).astype(int))


def _attr_lines(files):
    return files["list_attr_celeba.txt"].read_text().splitlines()


def _write_lines(files, lines):
    files["list_attr_celeba.txt"].write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: make_celeba_files(d, 3, count=4),
         r"list_attr_celeba.txt: count line says 4 images but the file has 3 rows"),
        (lambda d: make_celeba_files(d, 3, drop_image=2), r"img_align_celeba.zip: missing 1 image.*000002.jpg"),
    ],
)
def test_celeba_count_and_missing_member(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        preprocess("celeba", make(tmp_path / "in"), tmp_path / "out", tmp_path / "scratch")
    assert not (tmp_path / "out" / "meta.json").exists()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda ls: ["three"] + ls[1:], r"list_attr_celeba.txt: line 1 must be the image count"),
        (lambda ls: ls[:2] + ls[3:] + [ls[2].replace("000001", "000009")],
         r"no attribute row for 1 image.*000001.jpg"),
        (lambda ls: [ls[0], ls[1].replace(" Young", "")] + ls[2:], r"rows have 41 fields but the header names 39"),
        (lambda ls: ls[:2] + [ls[2] + " 1"] + ls[3:], r"rows have 42 fields but the header names 40"),
        (lambda ls: ls[:3] + [ls[3] + " 1"] + ls[4:], r"list_attr_celeba.txt: malformed attribute rows"),
        (lambda ls: ls[:3] + [ls[3].rsplit(" ", 1)[0]] + ls[4:], r"000002.jpg \(line 4\) has fewer than 40"),
        (lambda ls: ls[:2] + [ls[2][:-2] + " 0"] + ls[3:], r"000001.jpg \(line 3\) has values other than ±1"),
        (lambda ls: [ls[0], ls[1].replace("Smiling", "Grinning")] + ls[2:],
         r"lacks the paper's attributes \['Smiling'\]"),
        (lambda ls: [str(4)] + ls[1:] + [ls[2]], r"duplicate rows for 000001.jpg"),
    ],
)
def test_celeba_malformed_attribute_file(tmp_path, edit, message):
    files = make_celeba_files(tmp_path / "in", 3)
    _write_lines(files, edit(_attr_lines(files)))
    with pytest.raises(ValueError, match=message):
        preprocess("celeba", files, tmp_path / "out", tmp_path / "scratch")


def test_celeba_extra_image_and_bad_jpeg(tmp_path):
    files = make_celeba_files(tmp_path / "in", 2)
    with zipfile.ZipFile(files["img_align_celeba.zip"], "a") as zf:
        zf.writestr("img_align_celeba/000003.jpg", b"not a jpeg")
    with pytest.raises(ValueError, match=r"no attribute row for 1 image.*000003.jpg"):
        preprocess("celeba", files, tmp_path / "out", tmp_path / "scratch")
    lines = _attr_lines(files)
    _write_lines(files, ["3", *lines[1:], lines[2].replace("000001", "000003")])
    with pytest.raises(ValueError, match=r"img_align_celeba.zip: img_align_celeba/000003.jpg is not a readable image"):
        preprocess("celeba", files, tmp_path / "out", tmp_path / "scratch")
    assert not (tmp_path / "scratch" / "celeba_images.npy").exists()
