"""Symsol-like renderer (spec datasets.md §8a)."""

import itertools

import numpy as np
import pytest

from vaetransfer.data import symsol
from vaetransfer.data.symsol import (
    LIGHT,
    SYMSOL_SHAPES,
    first_unique,
    generate_symsol,
    quaternion_to_matrix,
    render_symsol,
    solid_mesh,
    symsol_meta,
)

# A generic pose (no face edge-on, no symmetry axis along the view).
GENERIC = quaternion_to_matrix(np.array([0.8, 0.3, -0.4, 0.33]) / np.linalg.norm([0.8, 0.3, -0.4, 0.33]))


@pytest.fixture(scope="module")
def sample():
    return generate_symsol(60, seed=7)


def test_shapes_order():
    assert SYMSOL_SHAPES == ("tetrahedron", "cube", "icosahedron", "cone", "cylinder")


@pytest.mark.parametrize(
    "shape, n_faces", [(0, 4), (1, 6), (2, 20), (3, symsol.N_ROUND + 1), (4, symsol.N_ROUND + 2)]
)
def test_meshes_are_closed_convex_and_unit(shape, n_faces):
    verts, faces, normals = solid_mesh(shape)
    assert len(faces) == n_faces
    np.testing.assert_allclose(np.linalg.norm(verts, axis=1), 1.0)  # circumradius 1, centred
    edges = {tuple(sorted((f[i], f[(i + 1) % len(f)]))) for f in faces for i in range(len(f))}
    assert len(verts) - len(edges) + len(faces) == 2  # Euler: a closed genus-0 surface
    for face, n in zip(faces, normals):
        # Outward unit normal; every vertex lies on or behind the face's plane (convexity).
        assert np.linalg.norm(n) == pytest.approx(1.0)
        offset = verts[face[0]] @ n
        assert offset > 0
        assert (verts @ n <= offset + 1e-9).all()
        np.testing.assert_allclose(verts[face] @ n, offset, atol=1e-9)


def test_quaternion_to_matrix():
    q = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])  # 90 degrees about z
    np.testing.assert_allclose(quaternion_to_matrix(q) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    qs = symsol.random_quaternions(np.random.default_rng(0), 100)
    mats = quaternion_to_matrix(qs)
    np.testing.assert_allclose(
        mats @ mats.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (100, 3, 3)), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(mats), 1.0)


def test_cube_under_identity_shows_one_uniform_face():
    img = render_symsol(1, np.eye(3))
    assert img.shape == (64, 64) and img.dtype == np.uint8
    face_level = round(255 * (0.25 + 0.75 * LIGHT[2]))  # the +z face, normal (0, 0, 1)
    centre = img[22:42, 22:42].astype(int)
    assert np.abs(centre - face_level).max() <= 1
    # A centred axis-aligned square of side 2·24/√3 ≈ 27.7 px (threshold at half intensity,
    # as LANCZOS rings faintly outside the edge).
    on = img > face_level // 2
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    assert rows[0] == cols[0] and rows[-1] == cols[-1] and rows[0] + rows[-1] == 63
    assert rows[-1] - rows[0] + 1 == 28
    assert on.sum() == 28 * 28


def test_cube_faces_and_flat_shading():
    # Half a turn about y brings the object's −z face to the front with camera normal +z again:
    # same picture (only front faces are drawn, shaded by their camera-frame normal).
    flipped = render_symsol(1, np.diag([-1.0, 1.0, -1.0]))
    np.testing.assert_array_equal(flipped, render_symsol(1, np.eye(3)))
    # Tilting about x by 0.3 rad shows the top face (+y) above the front face (+z), each flat.
    c, s = np.cos(0.3), np.sin(0.3)
    tilt = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    img = render_symsol(1, tilt).astype(int)
    levels = [round(255 * (0.25 + 0.75 * max(0.0, (tilt @ n) @ LIGHT))) for n in ([0, 0, 1], [0, 1, 0])]
    front, top = (np.abs(img - level) <= 1 for level in levels)
    assert front.sum() > 400 and top.sum() > 80
    assert np.nonzero(top)[0].mean() < np.nonzero(front)[0].mean()  # top face is higher on screen


def test_five_shapes_have_different_silhouettes():
    silhouettes = [render_symsol(s, GENERIC) > 32 for s in range(5)]
    for a, b in itertools.combinations(range(5), 2):
        assert (silhouettes[a] != silhouettes[b]).sum() > 30, (SYMSOL_SHAPES[a], SYMSOL_SHAPES[b])


def test_generate_shapes_frame_and_quaternions(sample):
    images, factors = sample
    assert images.shape == (60, 64, 64, 1) and images.dtype == np.uint8
    assert list(factors.columns) == ["shape", "q_w", "q_x", "q_y", "q_z"]
    assert factors["shape"].dtype.kind == "i"
    np.testing.assert_array_equal(factors["shape"], np.arange(60) % 5)  # balanced, i % 5
    q = factors[["q_w", "q_x", "q_y", "q_z"]].to_numpy()
    assert q.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0)
    assert (q[:, 0] >= 0).all()
    # Non-empty, and inside the frame: the object spans 75 % of it, so a 4 px border stays black.
    assert (images.reshape(60, -1).max(axis=1) > 100).all()
    assert not images[:, :4].any() and not images[:, -4:].any()
    assert not images[:, :, :4].any() and not images[:, :, -4:].any()


def test_generate_matches_render(sample):
    images, factors = sample
    for i in (0, 13, 59):
        q = factors.loc[i, ["q_w", "q_x", "q_y", "q_z"]].to_numpy(dtype=float)
        expected = render_symsol(int(factors.loc[i, "shape"]), quaternion_to_matrix(q))
        np.testing.assert_array_equal(images[i, :, :, 0], expected)


def test_generate_is_deterministic(sample):
    images, factors = generate_symsol(60, seed=7)
    np.testing.assert_array_equal(images, sample[0])
    assert factors.equals(sample[1])
    other, _ = generate_symsol(10, seed=8)
    assert not np.array_equal(other, images[:10])


def test_duplicates_are_dropped_keeping_first(monkeypatch):
    real = symsol.random_quaternions

    def repeating(rng, n):
        q = real(rng, n)
        q[5:10] = q[0:5]  # images 5..9 repeat 0..4 (same shape i % 5, same pose)
        q[12] = q[2]  # 12 % 5 == 2: same solid, same pose -> duplicate
        q[13] = q[1]  # same pose but solid 3 vs 1 -> kept
        return q

    monkeypatch.setattr(symsol, "random_quaternions", repeating)
    images, factors = generate_symsol(15, seed=0)
    kept = [0, 1, 2, 3, 4, 10, 11, 13, 14]
    assert len(images) == len(factors) == len(kept)
    np.testing.assert_array_equal(factors["shape"], np.array(kept) % 5)
    assert list(factors.index) == list(range(len(kept)))
    assert len(first_unique(images)) == len(images)


def test_first_unique():
    a = np.zeros((6, 4, 4, 1), np.uint8)
    a[1, 0, 0] = 1
    a[3, 0, 0] = 1
    a[4, 1, 1] = 9
    np.testing.assert_array_equal(first_unique(a), [0, 1, 4])


@pytest.mark.parametrize(
    "shape, rotation, match",
    [
        (5, np.eye(3), "shape"),
        (True, np.eye(3), "shape"),
        (0, 2 * np.eye(3), "rotation"),
        (0, -np.eye(3), "rotation"),
        (0, np.eye(2), "rotation"),
    ],
)
def test_render_validates(shape, rotation, match):
    with pytest.raises(ValueError, match=match):
        render_symsol(shape, rotation)


def test_generate_validates_n():
    with pytest.raises(ValueError, match="n"):
        generate_symsol(0, seed=0)


def test_meta():
    meta = symsol_meta(100, 3)
    assert meta["name"] == "symsol"
    assert meta["factors"]["shape"] == {"size": 5, "values": list(SYMSOL_SHAPES)}
    assert list(meta["factors"]) == ["shape", "q_w", "q_x", "q_y", "q_z"]
    assert meta["params"]["seed"] == 3 and meta["params"]["n_requested"] == 100
