"""Symsol-like renderer: the five featureless SYMSOL I solids under uniform random rotations,
an offline stand-in for the authors' Symsol_reduced (spec datasets.md §8a, background in §4).

Recipe (spec §8a):

- geometry normalised to circumradius 1 and centred on the circumsphere; faces from a brute-force
  convex hull of the vertices (all five solids are convex);
- pose: uniform SO(3) from a normalised 4-D Gaussian quaternion;
- orthographic projection along the camera's −z axis (the viewer sits at +z), object centred,
  its bounding circle spanning 75 % of the frame;
- back-face culling (n_z > 0), which is exact for convex bodies, so no z-buffer is needed;
- flat shading ``0.25 + 0.75·max(0, n·L)`` with a fixed light L;
- ``ImageDraw.polygon`` on a 256² 'L' canvas (black background), then LANCZOS down to 64×64;
- the "reduced" step: exact duplicate images are dropped, first occurrence kept.

Fidelity limit: the real renderings' colours, lighting and camera are unknown (spec §8a), so this
is a Symsol-*like* set, not the real data.
"""

from __future__ import annotations

import functools
import hashlib
import itertools

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

SYMSOL_SHAPES = ("tetrahedron", "cube", "icosahedron", "cone", "cylinder")
QUATERNION_COLUMNS = ("q_w", "q_x", "q_y", "q_z")

IMAGE_SIZE = 64
CANVAS_SIZE = 256  # supersampled canvas; LANCZOS down-sampling provides the anti-aliasing
FILL_FRACTION = 0.75  # the circumscribed circle's diameter, as a fraction of the frame
LIGHT = np.array([-1.0, 1.0, 2.0]) / np.sqrt(6.0)  # camera frame (x right, y up, z to viewer): upper left
N_ROUND = 48  # polygon sides of the cone base and cylinder caps (spec: 48–64)
_PLANE_TOL = 1e-9


def _solid_vertices(shape: int) -> np.ndarray:
    """(V, 3) vertices of solid `shape`, on the unit sphere (circumradius 1, centred)."""
    phi = (1.0 + np.sqrt(5.0)) / 2.0
    ring = np.linspace(0.0, 2.0 * np.pi, N_ROUND, endpoint=False)
    circle = np.stack([np.cos(ring), np.sin(ring)], axis=1)
    if shape == 0:
        verts = np.array([(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)], dtype=float)
    elif shape == 1:
        verts = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
    elif shape == 2:
        base = [(0.0, a, b * phi) for a in (-1, 1) for b in (-1, 1)]
        verts = np.array([np.roll(p, k) for p in base for k in range(3)], dtype=float)
    elif shape == 3:
        # Apex and base on the unit sphere: height 1.5, base radius sqrt(3)/2.
        base = np.column_stack([circle * np.sqrt(0.75), np.full(N_ROUND, -0.5)])
        verts = np.vstack([[0.0, 0.0, 1.0], base])
    elif shape == 4:
        # Height equal to the diameter, both caps on the unit sphere.
        r = np.sqrt(0.5)
        verts = np.vstack([np.column_stack([circle * r, np.full(N_ROUND, z)]) for z in (-r, r)])
    else:
        raise ValueError(f"shape must be an int in 0..{len(SYMSOL_SHAPES) - 1}, got {shape!r}")
    return verts / np.linalg.norm(verts, axis=1, keepdims=True)


def _convex_hull_faces(verts: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Brute-force hull: every vertex triple whose plane has all vertices on one side spans a
    face; coplanar vertices are merged and ordered by angle. Returns (face vertex-index arrays,
    (F, 3) outward unit normals). O(V³), fine for ≤ 100 vertices and cached per solid."""
    tri = np.array(list(itertools.combinations(range(len(verts)), 3)))
    a, b, c = verts[tri[:, 0]], verts[tri[:, 1]], verts[tri[:, 2]]
    normals = np.cross(b - a, c - a)
    norm = np.linalg.norm(normals, axis=1)
    keep = norm > 1e-12
    normals, a = normals[keep] / norm[keep, None], a[keep]
    offsets = np.einsum("fk,fk->f", normals, a)
    side = verts @ normals.T - offsets  # (V, F)
    outward = (side <= _PLANE_TOL).all(axis=0)
    inward = (side >= -_PLANE_TOL).all(axis=0)
    planes = np.concatenate(
        [
            np.column_stack([normals[outward], offsets[outward]]),
            -np.column_stack([normals[inward], offsets[inward]]),
        ]
    )
    # Many triples span the same face (e.g. a 48-gon cap); rounding merges them.
    planes = np.unique(np.round(planes, 7) + 0.0, axis=0)  # + 0.0 turns -0.0 into 0.0
    faces = [_order_around(verts, np.flatnonzero(np.abs(verts @ p[:3] - p[3]) < 1e-6), p[:3]) for p in planes]
    # Recompute each normal from its (exact) face vertices rather than the rounded plane.
    normals = np.array([_newell_normal(verts[f]) for f in faces])
    return faces, normals


def _newell_normal(poly: np.ndarray) -> np.ndarray:
    """Unit normal of the planar polygon `poly` (K, 3), oriented by its vertex order."""
    nxt = np.roll(poly, -1, axis=0)
    n = np.array(
        [
            np.sum((poly[:, 1] - nxt[:, 1]) * (poly[:, 2] + nxt[:, 2])),
            np.sum((poly[:, 2] - nxt[:, 2]) * (poly[:, 0] + nxt[:, 0])),
            np.sum((poly[:, 0] - nxt[:, 0]) * (poly[:, 1] + nxt[:, 1])),
        ]
    )
    return n / np.linalg.norm(n)


def _order_around(verts: np.ndarray, idx: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Order coplanar vertices `idx` counter-clockwise around `normal`."""
    pts = verts[idx] - verts[idx].mean(axis=0)
    e1 = pts[0] / np.linalg.norm(pts[0])
    e2 = np.cross(normal, e1)
    return idx[np.argsort(np.arctan2(pts @ e2, pts @ e1))]


@functools.lru_cache(maxsize=None)
def solid_mesh(shape: int) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
    """(vertices (V,3), faces (tuple of index arrays), outward normals (F,3)) of solid `shape`."""
    verts = _solid_vertices(shape)
    faces, normals = _convex_hull_faces(verts)
    return verts, tuple(faces), normals


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion(s) (..., 4) as (w, x, y, z) -> rotation matrix(es) (..., 3, 3)."""
    w, x, y, z = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def random_quaternions(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 4) uniform random unit quaternions (w, x, y, z) with w ≥ 0 (q and −q are the same
    rotation; the sign is fixed so that stored labels are canonical)."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return q


def render_symsol(shape: int, rotation: np.ndarray) -> np.ndarray:
    """Render solid `shape` (index into SYMSOL_SHAPES) under the (3, 3) rotation matrix
    `rotation` (object → camera frame). Returns (64, 64) uint8, 0..255, black background."""
    if isinstance(shape, (bool, np.bool_)) or not isinstance(shape, (int, np.integer)) or not 0 <= shape < 5:
        raise ValueError(f"shape must be an int in 0..{len(SYMSOL_SHAPES) - 1}, got {shape!r}")
    rot = np.asarray(rotation, dtype=np.float64)
    if rot.shape != (3, 3) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6) or np.linalg.det(rot) < 0:
        raise ValueError(f"rotation must be a (3, 3) proper rotation matrix, got {rotation!r}")
    verts, faces, normals = solid_mesh(int(shape))
    v = verts @ rot.T
    n = normals @ rot.T
    half = CANVAS_SIZE / 2.0
    radius = FILL_FRACTION * half
    # Screen: column = x, row = −y (camera y points up, image rows grow downwards).
    xy = np.column_stack([half + radius * v[:, 0], half - radius * v[:, 1]])
    shade = 0.25 + 0.75 * np.clip(n @ LIGHT, 0.0, None)
    canvas = Image.new("L", (CANVAS_SIZE, CANVAS_SIZE), 0)
    draw = ImageDraw.Draw(canvas)
    for face, nz, level in zip(faces, n[:, 2], shade):
        if nz > 1e-9:  # back-face culling; exact for convex solids
            fill = int(round(255 * level))
            draw.polygon([tuple(p) for p in xy[face]], fill=fill, outline=fill)
    small = canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.uint8)


def first_unique(images: np.ndarray) -> np.ndarray:
    """Sorted indices of the first occurrence of every distinct image in `images` (N, ...).

    Hashes each image's bytes (cheap, O(N) memory of digests) and confirms equal digests by
    comparing pixels, so the result is exact.
    """
    first: dict[bytes, list[int]] = {}
    keep = []
    for i, img in enumerate(images):
        key = hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=16).digest()
        candidates = first.setdefault(key, [])
        if any(np.array_equal(images[j], img) for j in candidates):
            continue
        candidates.append(i)
        keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def generate_symsol(n: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Render `n` Symsol-like images, then drop exact duplicates (spec §8a "Reduced" step).

    Image i shows shape ``i % 5`` (balanced classes) under a uniform random rotation drawn with
    ``np.random.default_rng(seed)``. Returns ``images`` uint8 (N, 64, 64, 1), N ≤ n, generation
    order kept, and ``factors`` with columns ``shape`` (int64, 0..4) and ``q_w, q_x, q_y, q_z``
    (float64 unit quaternion, w ≥ 0, of the rotation applied to the object).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rng = np.random.default_rng(seed)
    quats = random_quaternions(rng, int(n))
    shapes = np.arange(n, dtype=np.int64) % len(SYMSOL_SHAPES)
    mats = quaternion_to_matrix(quats)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    for i in range(n):
        images[i, :, :, 0] = render_symsol(int(shapes[i]), mats[i])
    keep = first_unique(images)
    factors = pd.DataFrame({"shape": shapes[keep]})
    for k, col in enumerate(QUATERNION_COLUMNS):
        factors[col] = quats[keep, k]
    if len(keep) < n:
        images = images[keep]
    return images, factors


def symsol_meta(n: int, seed: int) -> dict:
    """Store metadata (see store.py) for `generate_symsol(n, seed)`.

    Quaternion columns are continuous: their ``size`` is 0 and ``values`` None.
    """
    factors = {"shape": {"size": len(SYMSOL_SHAPES), "values": list(SYMSOL_SHAPES)}}
    factors.update({col: {"size": 0, "values": None, "continuous": True} for col in QUATERNION_COLUMNS})
    return {
        "name": "symsol",
        "factors": factors,
        "source": "procedural Symsol-like renderer (spec datasets.md §8a)",
        "version": 1,
        "params": {
            "n_requested": int(n),
            "seed": int(seed),
            "canvas_size": CANVAS_SIZE,
            "fill_fraction": FILL_FRACTION,
            "light": LIGHT.tolist(),
            "n_round": N_ROUND,
        },
    }
