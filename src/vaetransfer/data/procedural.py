"""Procedural dSprites: the real factor grid rendered from the calibrated geometry of spec
datasets.md §7, so CI and quick runs never need the 26 MB download.

Conventions (spec §7, "Rasterisation and coordinate conventions"):

- canvas 64×64, binary, no anti-aliasing; pixel (row i, col j) is on iff its centre
  (x = j + 0.5, y = i + 0.5) lies *strictly* inside the shape;
- anchor ``cx = 16 + 32·pos_x`` (column), ``cy = 16 + 32·pos_y`` (row, y down);
- a pixel is tested in shape space as ``(u, v) = R(θ)·((x, y) − anchor) / s`` with
  ``R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]]``, which turns the sprite counter-clockwise on
  screen as θ grows (y points down);
- shapes at scale 1: square ``|u|, |v| < 9.6``; ellipse ``(u/12.75)² + (v/7.25)² < 1``;
  heart = diamond ``|u| + |v − 0.4| < 11.3/√2`` ∪ discs of radius 4.9 at ``(±4.7, −4.3)``.

Storage order is the real dataset's (spec §1 "Format"): shape slowest … pos_y fastest, so a
row's index is ``((((shape·6 + scale)·40 + orientation)·32 + pos_x)·32 + pos_y)``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

IMAGE_SIZE = 64

DSPRITES_FACTORS: dict[str, np.ndarray] = {
    "shape": np.arange(3),
    "scale": np.linspace(0.5, 1.0, 6),
    "orientation": np.linspace(0.0, 2.0 * np.pi, 40),
    "pos_x": np.linspace(0.0, 1.0, 32),
    "pos_y": np.linspace(0.0, 1.0, 32),
}
SHAPE_NAMES = ("square", "ellipse", "heart")

# Shape constants at scale 1, in pixels (spec §7 "Shapes at scale 1").
_SQUARE_HALF = 9.6
_ELLIPSE_AXES = (12.75, 7.25)
_HEART_DIAMOND = 11.3 / math.sqrt(2.0)
_HEART_DIAMOND_DV = 0.4
_HEART_DISC_R = 4.9
_HEART_DISC_CENTRE = (4.7, -4.3)  # and its mirror (-4.7, -4.3)

# Pixel-centre coordinates; float64 so that the strict "<" tests match the scalar spec exactly.
_CENTRES = np.arange(IMAGE_SIZE, dtype=np.float64) + 0.5


def _shape_space(scales, thetas, cx, cy) -> tuple[np.ndarray, np.ndarray]:
    """Shape-space coordinates of every pixel centre for a batch of n sprites.

    All inputs are float arrays of shape (n,); returns ``u, v`` of shape (n, 64, 64), indexed
    [sprite, row, col]. ``dx`` varies along columns only and ``dy`` along rows only, so each
    product is an (n,1,64) or (n,64,1) array and the only full-size work is two broadcast adds.
    """
    cos = (np.cos(thetas) / scales)[:, None, None]
    sin = (np.sin(thetas) / scales)[:, None, None]
    dx = _CENTRES[None, None, :] - cx[:, None, None]  # (n, 1, 64)
    dy = _CENTRES[None, :, None] - cy[:, None, None]  # (n, 64, 1)
    u = cos * dx - sin * dy
    v = sin * dx + cos * dy
    return u, v


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask, same shape as `u`, of points strictly inside shape class `shape`."""
    if shape == 0:
        return (np.abs(u) < _SQUARE_HALF) & (np.abs(v) < _SQUARE_HALF)
    if shape == 1:
        a, b = _ELLIPSE_AXES
        return (u / a) ** 2 + (v / b) ** 2 < 1.0
    # The two lobes are mirror images about u = 0, so their union is one disc test on |u|;
    # -(u + 4.7) == |u| - 4.7 exactly in IEEE arithmetic for u < 0, so this is bit-identical.
    au = np.abs(u)
    mask = au + np.abs(v - _HEART_DIAMOND_DV) < _HEART_DIAMOND
    du, dv = _HEART_DISC_CENTRE
    au -= du
    au *= au
    au += (v - dv) ** 2
    mask |= au < _HEART_DISC_R**2
    return mask


def _rasterise(shapes, scales, thetas, pos_x, pos_y) -> np.ndarray:
    """Render a batch: (n,) parameter arrays -> bool (n, 64, 64). Groups by shape so each
    pixel test runs on the sprites it applies to only."""
    shapes = np.asarray(shapes)
    out = np.zeros((len(shapes), IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    cx = 16.0 + 32.0 * np.asarray(pos_x, dtype=np.float64)
    cy = 16.0 + 32.0 * np.asarray(pos_y, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    thetas = np.asarray(thetas, dtype=np.float64)
    for k in np.unique(shapes):
        sel = np.flatnonzero(shapes == k)
        u, v = _shape_space(scales[sel], thetas[sel], cx[sel], cy[sel])
        out[sel] = _inside(int(k), u, v)
    return out


def _check_range(name: str, value, lo: float, hi: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not (lo <= x <= hi):  # also rejects NaN
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value!r}")
    return x


def render_dsprite(shape: int, scale: float, orientation: float, pos_x: float, pos_y: float) -> np.ndarray:
    """Render one sprite (spec §7) as a (64, 64) uint8 array of 0/1.

    shape: 0 square, 1 ellipse, 2 heart; scale in [0.5, 1]; orientation in radians (any finite
    value; counter-clockwise on screen); pos_x (column) and pos_y (row) in [0, 1].
    """
    if (
        isinstance(shape, (bool, np.bool_))
        or not isinstance(shape, (int, np.integer))
        or shape not in (0, 1, 2)
    ):
        raise ValueError(f"shape must be 0 (square), 1 (ellipse) or 2 (heart), got {shape!r}")
    s = _check_range("scale", scale, 0.5, 1.0)
    theta = _check_range("orientation", orientation, -math.inf, math.inf)
    if not math.isfinite(theta):
        raise ValueError(f"orientation must be finite, got {orientation!r}")
    px = _check_range("pos_x", pos_x, 0.0, 1.0)
    py = _check_range("pos_y", pos_y, 0.0, 1.0)
    mask = _rasterise([int(shape)], [s], [theta], [px], [py])[0]
    return mask.view(np.uint8)


def _resolve_indices(factor_indices: Mapping[str, Sequence[int]] | None) -> dict[str, np.ndarray]:
    """Validate a per-factor subset; returns sorted int64 index arrays for every factor, in
    canonical order (a sorted subset keeps the real storage order)."""
    factor_indices = dict(factor_indices or {})
    unknown = sorted(set(factor_indices) - set(DSPRITES_FACTORS))
    if unknown:
        raise ValueError(f"unknown dSprites factor(s) {unknown}; known: {list(DSPRITES_FACTORS)}")
    resolved = {}
    for name, values in DSPRITES_FACTORS.items():
        size = len(values)
        if name not in factor_indices:
            resolved[name] = np.arange(size, dtype=np.int64)
            continue
        raw = np.asarray(factor_indices[name])
        if raw.ndim != 1 or raw.size == 0 or not np.issubdtype(raw.dtype, np.integer):
            raise ValueError(
                f"factor_indices[{name!r}] must be a non-empty list of ints, got {factor_indices[name]!r}"
            )
        bad = raw[(raw < 0) | (raw >= size)]
        if bad.size:
            raise ValueError(f"factor_indices[{name!r}] out of range [0, {size}): {bad.tolist()}")
        if len(np.unique(raw)) != raw.size:
            raise ValueError(f"factor_indices[{name!r}] has duplicates: {raw.tolist()}")
        resolved[name] = np.sort(raw).astype(np.int64)
    return resolved


def dsprites_factor_table(factor_indices: Mapping[str, Sequence[int]] | None = None) -> pd.DataFrame:
    """The factors frame of `generate_dsprites(factor_indices)` without rendering anything:
    the Cartesian product of the per-factor class indices (int64), shape slowest and pos_y
    fastest, i.e. the real dataset's storage order (spec §1 "Format")."""
    indices = _resolve_indices(factor_indices)
    grids = np.meshgrid(*indices.values(), indexing="ij")
    return pd.DataFrame({name: g.ravel() for name, g in zip(indices, grids)})


def generate_dsprites(
    factor_indices: Mapping[str, Sequence[int]] | None = None,
    chunk_size: int = 1024,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Render the dSprites grid, or the Cartesian sub-grid picked by `factor_indices`.

    factor_indices: {factor: list of class indices}; a missing factor means all its values.
    Returns ``images`` uint8 (N, 64, 64, 1) with values 0/255 (the store's 0..255 convention) and
    ``factors``: one int64 column per factor (shape, scale, orientation, pos_x, pos_y) holding
    the class index into the *full* grid, rows in canonical storage order.
    `out` (e.g. a np.memmap of shape (N, 64, 64, 1), uint8) is written in place, so the full
    737,280-image grid (3 GB) never needs a second copy; float temporaries live per chunk only.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    classes = dsprites_factor_table(factor_indices)
    n = len(classes)
    shape = (n, IMAGE_SIZE, IMAGE_SIZE, 1)
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 of shape {shape}, got {out.dtype} {out.shape}")
    values = {name: DSPRITES_FACTORS[name][classes[name].to_numpy()] for name in DSPRITES_FACTORS}
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        mask = _rasterise(*(values[name][start:stop] for name in DSPRITES_FACTORS))
        np.multiply(mask, np.uint8(255), out=out[start:stop, :, :, 0], dtype=np.uint8)
    return out, classes


def dsprites_meta(factor_indices: Mapping[str, Sequence[int]] | None = None) -> dict:
    """Store metadata (see store.py) for `generate_dsprites(factor_indices)`.

    ``factors[name]`` has ``size`` (number of values in the subset), ``values`` (those values,
    in order) and ``indices`` (their class indices in the full grid, i.e. what the factors
    column holds).
    """
    indices = _resolve_indices(factor_indices)
    factors = {
        name: {
            "size": int(len(idx)),
            "values": DSPRITES_FACTORS[name][idx].tolist(),
            "indices": idx.tolist(),
        }
        for name, idx in indices.items()
    }
    factors["shape"]["names"] = [SHAPE_NAMES[i] for i in indices["shape"]]
    full = all(len(idx) == len(DSPRITES_FACTORS[n]) for n, idx in indices.items())
    return {
        "name": "dsprites",
        "factors": factors,
        "source": "procedural dSprites (spec datasets.md §7)",
        "version": 1,
        "params": {
            "factor_indices": None if full else {n: idx.tolist() for n, idx in indices.items()},
        },
    }
