"""Representation similarity: linear CKA and Procrustes, exact, cached and batched (CPU or CUDA).

Metrics (the keys of :data:`METRICS` are the names used in config, wildcards, tables and the CLI):

- ``"cka"``: linear CKA (Kornblith et al. 2019, "Similarity of neural network representations
  revisited"), ``<vec Kc, vec Lc> / (||Kc||_F ||Lc||_F)`` with ``Kc = Xc Xc^T`` the Gram of the
  column-centred activations; biased HSIC by default (the paper), unbiased with ``debiased=True``.
- ``"procrustes"``: Procrustes similarity (Ding et al. 2021; Bonheme & Grzes 2023, Appendix C
  Eq. 7). With X, Y centred and scaled to unit Frobenius norm,
  ``1 - (||X||^2 + ||Y||^2 - 2 ||X^T Y||_*) / 2 = ||X^T Y||_*``.

Both are similarities in [0, 1] (1 = equal up to the metric's invariances; debiased CKA can dip
below 0); the only distance is :func:`procrustes_distance`. Arrays are ``(n_samples, n_features)``
(trailing axes flattened). The metrics do not threshold tiny values: the workflow applies
:func:`zero_small` to raw activations first, as the authors did.

Block API: :func:`pairwise` scores every pair of two sequences of representations, preparing each
representation once (:mod:`vaetransfer.similarity.engine` explains the method and its precision).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from vaetransfer.similarity.engine import (
    METRIC_NAMES,
    ZERO_BELOW,
    Prepared,
    check_metrics,
    cka_block,
    nuclear_similarity,
    prepare,
    zero_small,
)

__all__ = [
    "METRICS", "METRIC_NAMES", "ZERO_BELOW", "Prepared", "pairwise", "prepare", "zero_small",
    "linear_cka", "procrustes_similarity", "procrustes_distance", "constant_flags",
]

#: What a pair involving a constant representation scores (see engine's docstring).
CONSTANT_CHOICES = ("defined", "nan")


def pairwise(
    reps_x: Sequence,
    reps_y: Sequence,
    metric: str,
    *,
    device: str = "cpu",
    debiased: bool = False,
    constant: str = "defined",
) -> np.ndarray:
    """Similarity of every (x, y) pair: a (len(reps_x), len(reps_y)) float64 matrix.

    reps_x, reps_y: sequences of (n, d_i) arrays (or tensors, or :class:`Prepared` from
    :func:`prepare`), all of the same n examples. Each distinct object is prepared once, even when
    it appears on both sides; passing the same sequence twice computes each unordered Procrustes
    pair once (CKA's stacked product is a full GEMM: symmetric to ~1e-16).
    metric: "cka" or "procrustes". device: torch device for the arithmetic ("cpu", "cuda", ...).
    debiased: unbiased-HSIC CKA. constant: "defined" (0 against a varying representation, 1
    between two constant ones) or "nan" (the authors' 0/0).
    """
    (metric,) = check_metrics(metric)
    if constant not in CONSTANT_CHOICES:
        raise ValueError(f"constant must be one of {CONSTANT_CHOICES}, got {constant!r}")
    cache: dict[int, Prepared] = {}
    px = [_prepared(r, metric, device, debiased, cache) for r in reps_x]
    py = px if reps_y is reps_x else [_prepared(r, metric, device, debiased, cache) for r in reps_y]
    _check_same_n(px, py)
    if not px or not py:
        return np.zeros((len(px), len(py)))
    if metric == "cka":
        scores = cka_block(px, py, device).cpu().numpy()
    else:
        scores = _procrustes_block(px, py, device)
    for i, a in enumerate(px):  # identical objects: exactly 1 (rounding aside)
        for j, b in enumerate(py):
            if a is b and not a.constant:
                scores[i, j] = 1.0
    low = -1.0 if (metric == "cka" and debiased) else 0.0
    scores = np.clip(scores, low, 1.0)
    cx, cy = constant_flags(px), constant_flags(py)
    either = cx[:, None] | cy[None, :]
    scores[either] = np.nan if constant == "nan" else 0.0
    if constant == "defined":
        scores[cx[:, None] & cy[None, :]] = 1.0
    return scores


def constant_flags(prepared: Sequence[Prepared]) -> np.ndarray:
    """Boolean vector: which prepared representations are constant (collapsed)."""
    return np.array([p.constant for p in prepared], dtype=bool)


def _prepared(rep, metric: str, device: str, debiased: bool, cache: dict[int, Prepared]) -> Prepared:
    if isinstance(rep, Prepared):
        if metric not in rep.metrics:
            raise ValueError(f"representation was prepared for {rep.metrics}, not for {metric!r}")
        if metric == "cka" and rep.debiased != debiased:
            raise ValueError(f"representation was prepared with debiased={rep.debiased}, not {debiased}")
        return rep
    key = id(rep)
    if key not in cache:
        cache[key] = prepare(rep, (metric,), device=device, debiased=debiased)
    return cache[key]


def _check_same_n(px: Sequence[Prepared], py: Sequence[Prepared]) -> None:
    sizes = {p.n_examples for p in [*px, *py]}
    if len(sizes) > 1:
        nx = [p.n_examples for p in px]
        ny = [p.n_examples for p in py]
        raise ValueError(
            f"all representations must hold the same examples, got row counts {nx} (x) and {ny} (y)"
        )


def _procrustes_block(px: Sequence[Prepared], py: Sequence[Prepared], device: str) -> np.ndarray:
    """Nuclear-norm similarities pair by pair; a symmetric block computes each unordered pair once."""
    symmetric = px is py
    out = np.zeros((len(px), len(py)))
    for i, a in enumerate(px):
        for j, b in enumerate(py):
            if symmetric and j < i:
                out[i, j] = out[j, i]
            elif a is not b:
                out[i, j] = nuclear_similarity(a, b, device)
    return out


# ------------------------------------------------------------------------------ single pairs


def linear_cka(X, Y, *, debiased: bool = False, device: str = "cpu") -> float:
    """Linear CKA of X (n, p) and Y (n, q) in Gram form (Kornblith et al. 2019).

    Invariant to orthogonal transforms, isotropic scaling and translation of the features.
    """
    return float(pairwise([X], [Y], "cka", debiased=debiased, device=device)[0, 0])


def procrustes_similarity(X, Y, *, device: str = "cpu") -> float:
    """Procrustes similarity ``||X^T Y||_*`` of normalised X (n, p), Y (n, q), in [0, 1] (App. C Eq. 7).

    X <- (X - column means) / ||.||_F, same for Y (Ding et al. 2021). Invariant to orthogonal
    transforms, isotropic scaling and translation.
    """
    return float(pairwise([X], [Y], "procrustes", device=device)[0, 0])


def procrustes_distance(X, Y, *, device: str = "cpu") -> float:
    """Procrustes distance ``sqrt(2 - 2 ||X^T Y||_*)`` = min over orthogonal Q of ||X - Y Q||_F on
    normalised X, Y (netrep's "euclidean" Procrustes), in [0, sqrt 2]."""
    return math.sqrt(max(0.0, 2.0 - 2.0 * procrustes_similarity(X, Y, device=device)))


METRICS: dict[str, Callable[..., float]] = {"cka": linear_cka, "procrustes": procrustes_similarity}
