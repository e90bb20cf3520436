"""Procedural dSprites against the geometry facts of spec datasets.md §7 and the real factor grid
of §1 ("Format")."""

import itertools

import numpy as np
import pytest

from vaetransfer.data.procedural import (
    DSPRITES_FACTORS,
    SHAPE_NAMES,
    dsprites_factor_table,
    dsprites_meta,
    generate_dsprites,
    render_dsprite,
)

SCALES = DSPRITES_FACTORS["scale"]
THETAS = DSPRITES_FACTORS["orientation"]
POS = DSPRITES_FACTORS["pos_x"]


def bbox(img):
    """(first row, last row, first col, last col, pixel count) of the on pixels."""
    rows = np.flatnonzero(img.any(axis=1))
    cols = np.flatnonzero(img.any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1], int(img.sum())


def centroid(img):
    """(x, y) centroid in continuous pixel coordinates (pixel centres at +0.5)."""
    rows, cols = np.nonzero(img)
    return cols.mean() + 0.5, rows.mean() + 0.5


# --- the factor grid ----------------------------------------------------------------------------


def test_factor_grid_sizes_and_values():
    assert list(DSPRITES_FACTORS) == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    assert [len(v) for v in DSPRITES_FACTORS.values()] == [3, 6, 40, 32, 32]
    assert SHAPE_NAMES == ("square", "ellipse", "heart")
    np.testing.assert_allclose(SCALES, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert THETAS[0] == 0 and THETAS[-1] == pytest.approx(2 * np.pi)
    np.testing.assert_allclose(np.diff(THETAS), 2 * np.pi / 39)
    np.testing.assert_allclose(np.diff(POS), 1 / 31)


def test_full_grid_is_canonical_storage_order():
    table = dsprites_factor_table()
    assert len(table) == 737_280
    classes = table.to_numpy()
    # Real dSprites: idx = ((((shape*6+scale)*40+orientation)*32+pos_x)*32+pos_y) (spec §1).
    flat = classes @ np.array([6 * 40 * 32 * 32, 40 * 32 * 32, 32 * 32, 32, 1])
    np.testing.assert_array_equal(flat, np.arange(737_280))


def test_subset_is_cartesian_product_in_order():
    subset = {"shape": [2, 0], "scale": [1, 3], "orientation": [0], "pos_x": [0, 5], "pos_y": [1, 2, 3]}
    table = dsprites_factor_table(subset)
    expected = list(itertools.product([0, 2], [1, 3], [0], [0, 5], [1, 2, 3]))  # sorted = storage order
    assert [tuple(r) for r in table.itertuples(index=False)] == expected
    assert list(table.columns) == list(DSPRITES_FACTORS)
    assert all(dtype.kind == "i" for dtype in table.dtypes)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"colour": [0]}, "colour"),
        ({"scale": [6]}, r"scale.*\[6\]"),
        ({"pos_x": [-1, 3]}, r"pos_x.*\[-1\]"),
        ({"shape": []}, "shape"),
        ({"orientation": [0.5]}, "orientation"),
        ({"pos_y": [2, 2]}, "duplicates"),
    ],
)
def test_bad_factor_indices_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        generate_dsprites(bad)
    with pytest.raises(ValueError, match=match):
        dsprites_meta(bad)


def test_meta_describes_subset():
    meta = dsprites_meta({"orientation": [0, 10], "pos_x": [31]})
    assert meta["name"] == "dsprites"
    assert {k: v["size"] for k, v in meta["factors"].items()} == {
        "shape": 3,
        "scale": 6,
        "orientation": 2,
        "pos_x": 1,
        "pos_y": 32,
    }
    assert meta["factors"]["orientation"]["values"] == pytest.approx([0.0, THETAS[10]])
    assert meta["factors"]["pos_x"]["indices"] == [31]
    assert meta["factors"]["shape"]["names"] == list(SHAPE_NAMES)
    assert dsprites_meta()["params"]["factor_indices"] is None


# --- geometry (spec §7) -------------------------------------------------------------------------


@pytest.mark.parametrize("scale_idx, side", list(enumerate([10, 12, 14, 16, 18, 20])))
def test_square_side_per_scale(scale_idx, side):
    img = render_dsprite(0, SCALES[scale_idx], 0.0, 0.0, 0.0)
    r0, r1, c0, c1, count = bbox(img)
    assert (r1 - r0 + 1, c1 - c0 + 1, count) == (side, side, side * side)


def test_square_at_pos_zero_covers_columns_6_to_25():
    _, _, c0, c1, _ = bbox(render_dsprite(0, 1.0, 0.0, 0.0, 0.3))
    assert (c0, c1) == (6, 25)


def test_ellipse_bounding_boxes():
    r0, r1, c0, c1, _ = bbox(render_dsprite(1, 1.0, 0.0, 0.0, 0.0))
    assert (c1 - c0 + 1, r1 - r0 + 1) == (26, 14)  # width x height, major axis horizontal
    r0, r1, c0, c1, _ = bbox(render_dsprite(1, 0.5, 0.0, 0.0, 0.0))
    assert (c1 - c0 + 1, r1 - r0 + 1) == (12, 8)


def test_heart_extent_and_area():
    img = render_dsprite(2, 1.0, 0.0, 0.0, 0.0)
    r0, r1, c0, c1, count = bbox(img)
    assert (r0, r1, c0, c1) == (7, 23, 6, 25)
    # The real heart has 222 px (spec §7); the fitted analytic heart gives 224 (two symmetric
    # rim pixels at (12, 6) and (12, 25) lie 0.03 px inside the lobes).
    assert count == 224
    assert centroid(img)[1] == pytest.approx(16 - 1.9, abs=0.1)  # lobes up: centroid above anchor
    assert render_dsprite(2, 0.5, 0.0, 0.0, 0.0).sum() == 58


@pytest.mark.parametrize("pos, anchor", [((0, 0), (16, 16)), ((1, 1), (48, 48)), ((0.5, 0.25), (32, 24))])
def test_anchor_positions(pos, anchor):
    img = render_dsprite(0, 1.0, 0.0, *pos)
    assert centroid(img) == pytest.approx(anchor)


def test_pos_x_moves_along_columns_and_pos_y_along_rows():
    xs = [centroid(render_dsprite(0, 0.8, 0.0, POS[i], 0.0)) for i in range(32)]
    np.testing.assert_allclose([x for x, _ in xs], 16 + 32 * POS, atol=0.5)
    assert len({y for _, y in xs}) == 1
    ys = [centroid(render_dsprite(0, 0.8, 0.0, 0.0, POS[i])) for i in range(0, 32, 5)]
    assert all(b > a for (_, a), (_, b) in zip(ys, ys[1:]))
    assert len({x for x, _ in ys}) == 1


def test_rotation_is_counter_clockwise_on_screen():
    # The ellipse's major axis starts horizontal; rotating counter-clockwise on screen (y down)
    # lifts its right end (smaller rows) and lowers its left end. Clockwise does the opposite.
    img = render_dsprite(1, 1.0, THETAS[2], 0.5, 0.5)
    rows, cols = np.nonzero(img)
    right, left = cols + 0.5 > 32 + 6, cols + 0.5 < 32 - 6
    assert rows[right].mean() + 0.5 < 32 < rows[left].mean() + 0.5
    # The heart turned by a quarter turn counter-clockwise has its lobes on the left.
    quarter = render_dsprite(2, 1.0, np.pi / 2, 0.5, 0.5)
    assert centroid(quarter)[0] < 32 - 1


def test_first_and_last_orientation_render_identically():
    images, factors = generate_dsprites({"orientation": [0, 39], "pos_x": [0, 13, 31], "pos_y": [0, 7, 31]})
    first = images[factors["orientation"].to_numpy() == 0]
    last = images[factors["orientation"].to_numpy() == 39]
    np.testing.assert_array_equal(first, last)


def test_sprites_never_leave_canvas():
    images, _ = generate_dsprites({"scale": [5], "pos_x": [0, 31], "pos_y": [0, 31]})
    assert len(images) == 3 * 40 * 4
    on = images[..., 0] > 0
    assert on.any(axis=(1, 2)).all()
    assert not on[:, [0, -1], :].any() and not on[:, :, [0, -1]].any()


@pytest.mark.parametrize(
    "args, name",
    [
        ((3, 1.0, 0.0, 0.0, 0.0), "shape"),
        ((True, 1.0, 0.0, 0.0, 0.0), "shape"),
        ((0, 0.4, 0.0, 0.0, 0.0), "scale"),
        ((0, 1.0, float("nan"), 0.0, 0.0), "orientation"),
        ((0, 1.0, 0.0, 1.1, 0.0), "pos_x"),
        ((0, 1.0, 0.0, 0.0, -0.1), "pos_y"),
        ((0, "big", 0.0, 0.0, 0.0), "scale"),
    ],
)
def test_render_validates_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        render_dsprite(*args)


def test_render_output_is_binary_uint8():
    img = render_dsprite(2, 0.7, 1.0, 0.3, 0.6)
    assert img.shape == (64, 64) and img.dtype == np.uint8
    assert set(np.unique(img)) == {0, 1}


# --- batch generation ---------------------------------------------------------------------------


def test_generate_matches_render_dsprite():
    subset = {"scale": [0, 3, 5], "orientation": [0, 7, 21, 38], "pos_x": [0, 17, 31], "pos_y": [2, 29]}
    images, factors = generate_dsprites(subset, chunk_size=50)  # several chunks, mixed shapes
    assert images.shape == (3 * 3 * 4 * 3 * 2, 64, 64, 1) and images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 255}
    rng = np.random.default_rng(0)
    for i in rng.choice(len(images), size=25, replace=False):
        row = factors.iloc[i]
        values = [DSPRITES_FACTORS[name][row[name]] for name in DSPRITES_FACTORS]
        expected = render_dsprite(int(values[0]), *values[1:]) * 255
        np.testing.assert_array_equal(images[i, :, :, 0], expected)


def test_generate_into_memmap(tmp_path):
    subset = {"orientation": [3], "pos_x": [4, 20], "pos_y": [9]}
    n = 3 * 6 * 2
    out = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(n, 64, 64, 1))
    images, _ = generate_dsprites(subset, out=out)
    assert images is out
    reference, _ = generate_dsprites(subset)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), reference)
    with pytest.raises(ValueError, match="out"):
        generate_dsprites(subset, out=np.zeros((n + 1, 64, 64, 1), np.uint8))
