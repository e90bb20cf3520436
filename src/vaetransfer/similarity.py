"""Representation similarity: linear CKA and Procrustes, with cached all-pairs scoring.

Pure numpy on ``(n_samples, n_features)`` arrays (any trailing shape is flattened). Every score is
computed in float64 whatever the input dtype: common float32 recipes at n = 5,000 were measured up
to 1e-1 (feature-space CKA) and 1e-2 (nuclear norm) off a float64 reference (spec reference.md §10).

Metrics (the keys of :data:`METRICS` are the names used in config, wildcards and file names):

- ``"cka"``: biased linear CKA (Kornblith et al. 2019, "Similarity of neural network representations
  revisited"), ``<vec Kc, vec Lc> / (||Kc||_F ||Lc||_F)`` with ``Kc = Xc Xc^T`` the Gram of the
  column-centred activations.
- ``"procrustes"``: Procrustes similarity (Ding et al. 2021, "Grounding representation similarity
  with statistical testing"; Bonheme & Grzes 2023, Appendix C Eq. 7). With X, Y centred and scaled to
  unit Frobenius norm, ``1 - (||X||^2 + ||Y||^2 - 2 ||X^T Y||_*) / 2 = ||X^T Y||_*``.

Both are similarities in [0, 1] (1 = equal up to the metric's invariances); the only distance here is
:func:`procrustes_distance`.

A representation with zero variance (every column constant, e.g. a collapsed log-variance head) makes
both metrics 0/0. They return NaN then, as the authors' code did, but without a RuntimeWarning.

The metrics do not threshold tiny values: apply :func:`prepare_activations` to raw activations first,
as the authors did.

All-pairs scoring (netrep's ``partial_fit`` idea; spec reference.md §7.2 item 2): :func:`prepare` does
the per-representation work once, :func:`pair_score` is then cheap for every partner:

- CKA keeps the centred Gram scaled to unit Frobenius norm (n x n); a pair is one dot product.
- Procrustes keeps a thin factor A (n x r, r <= min(n, p)) with ``A A^T = Xc Xc^T / ||Xc||_F^2``.
  Since ``X = U S V^T`` gives ``||X^T Y||_* = ||(U_x S_x)^T (U_y S_y)||_*`` and the nuclear norm
  ignores orthogonal factors, any such A works, and no p x q product (up to 32768 x 32768) is formed.
  A pair costs one r_x x r_y product and the eigenvalues of a min(r_x, r_y) square Gram.

Speed: this is LAPACK/BLAS-bound. When more busy threads than cores exist (parallel workflow jobs),
multithreaded OpenBLAS eigensolvers were measured up to 100x slower than single-threaded ones; set
OPENBLAS_NUM_THREADS to the job's thread count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

_EPS = np.finfo(np.float64).eps
# float64 copies of a wide layer are made a column block at a time, so a 5000 x 32768 float32 layer
# never needs a 1.3 GB float64 twin.
_BLOCK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------------------- validation


def check_equal_n_samples(X, Y) -> int:
    """Raise ValueError unless X and Y have the same number of rows (examples), at least 2.

    Returns that number. Every metric calls this: comparing representations of different examples
    is meaningless, and fewer than 2 examples have no variance.
    """
    return _check_n_pair(np.shape(X)[0], np.shape(Y)[0])


def _check_n_pair(n_x: int, n_y: int) -> int:
    if n_x != n_y:
        raise ValueError(
            f"X and Y must hold the same examples, but X has {n_x} rows (examples) and Y has {n_y}"
        )
    _check_enough_samples(n_x)
    return n_x


def _check_enough_samples(n: int) -> None:
    if n < 2:
        raise ValueError(f"similarity needs at least 2 examples, got {n}")


def _check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    """Validated metric names, duplicates dropped, order kept."""
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown similarity metric(s) {unknown}; valid keys are {sorted(METRICS)}")
    return tuple(dict.fromkeys(names))


def _as_2d(X) -> np.ndarray:
    """(n, ...) array-like -> (n, p) view (no copy, no dtype change)."""
    X = np.asarray(X)
    if X.ndim == 0:
        raise ValueError("activations must have a leading example axis, got a scalar")
    return X.reshape(X.shape[0], -1)


# ------------------------------------------------------------------------------------ preprocessing


def prepare_activations(X, threshold: float = 1e-7) -> np.ndarray:
    """Authors' ``prepare_activations``: flatten to (n, p), cast to float64, zero |x| < threshold.

    X: (n, ...) activations, e.g. (n, h, w, c) feature maps. Returns a new (n, p) float64 array.
    The authors zeroed tiny values to avoid underflow NaNs with annealed VAEs (reference.md §5.2).
    """
    out = _as_2d(X).astype(np.float64)  # always a copy: the caller's array is never modified
    rows = max(1, _BLOCK_BYTES // (8 * max(1, out.shape[1])))
    for start in range(0, out.shape[0], rows):  # row chunks bound the |x| temporary
        chunk = out[start : start + rows]
        chunk[np.abs(chunk) < threshold] = 0.0
    return out


# -------------------------------------------------------------------- Kornblith demo building blocks


def gram_linear(X) -> np.ndarray:
    """Linear Gram matrix ``X X^T`` in float64. X: (n, p) -> (n, n). (Kornblith et al. 2019 demo.)"""
    X = _as_2d(X).astype(np.float64, copy=False)
    return X @ X.T


def center_gram(K) -> np.ndarray:
    """Double-centre a symmetric Gram matrix, ``H K H`` with ``H = I - 11^T/n``. (n, n) -> (n, n).

    The biased (HSIC) centring of the Kornblith et al. 2019 demo; the unbiased variant is not used
    by the paper (config ``debiased: false``).
    """
    K = np.array(K, dtype=np.float64)  # copy
    if K.ndim != 2 or K.shape[0] != K.shape[1] or not np.allclose(K, K.T):
        raise ValueError(f"center_gram needs a symmetric square matrix, got shape {K.shape}")
    means = K.mean(axis=0)
    means -= means.mean() / 2  # K - row means - column means + grand mean, in two symmetric steps
    K -= means[:, None]
    K -= means[None, :]
    return K


def _centered_column_blocks(X: np.ndarray):
    """Yield float64 column blocks of ``X - column means``; constant columns are exactly 0.

    The float mean of n equal values can differ from them by an ulp, so without the explicit zeros a
    constant layer would get a tiny non-zero variance and a meaningless score instead of NaN.
    """
    n, p = X.shape
    width = max(1, _BLOCK_BYTES // (8 * n))
    for start in range(0, p, width):
        block = X[:, start : start + width].astype(np.float64)
        constant = block.max(axis=0) == block.min(axis=0)
        block -= block.mean(axis=0)
        block[:, constant] = 0.0
        yield block


def _centered(X: np.ndarray) -> np.ndarray:
    """Column-centred float64 copy of X (n, p)."""
    return np.hstack([np.empty((X.shape[0], 0)), *_centered_column_blocks(X)])


def _centered_gram(X: np.ndarray) -> np.ndarray:
    """``Xc Xc^T`` (n, n), accumulated in float64 over column blocks (the p x p product is never formed)."""
    n = X.shape[0]
    gram = np.zeros((n, n))
    for block in _centered_column_blocks(X):
        gram += block @ block.T  # numpy dispatches a @ a.T to BLAS syrk
    return gram


# ------------------------------------------------------------------------------- cached preparation


@dataclass(frozen=True, slots=True, eq=False)  # identity equality: fields hold arrays
class PreparedRepresentation:
    """Per-representation work for the metrics in ``metrics``, done once for all partners.

    n_examples, n_features: shape of the flattened (n, p) representation.
    constant: zero variance; every score with it is NaN.
    cka_gram: (n, n) centred Gram scaled to unit Frobenius norm (None unless "cka", or constant).
    procrustes_factor: (n, r) float64 A with ``A A^T = Xc Xc^T / ||Xc||_F^2`` (None unless
        "procrustes", or constant). When p <= n, A is Xc itself, scaled, without its constant
        columns; otherwise r is the numerical rank of the Gram (at most n - 1 after centring).
    """

    n_examples: int
    n_features: int
    metrics: tuple[str, ...]
    constant: bool
    cka_gram: np.ndarray | None = field(default=None, repr=False)
    procrustes_factor: np.ndarray | None = field(default=None, repr=False)


def prepare(X, metrics: Sequence[str] = ("cka", "procrustes")) -> PreparedRepresentation:
    """Centre and normalise one representation X (n, ...) for the given metric names.

    Raises ValueError for unknown metrics, fewer than 2 examples, or NaN/infinite activations.
    Memory: 8 n^2 bytes for "cka" (200 MB at n = 5000) plus 8 n r for "procrustes".
    """
    metrics = _check_metrics(metrics)
    X = _as_2d(X)
    n, p = X.shape
    _check_enough_samples(n)
    # Narrow layers keep the centred features as the Procrustes factor (no decomposition needed);
    # wide ones go through the n x n Gram, which CKA needs anyway.
    narrow = p <= n
    Xc = _centered(X) if narrow else None
    gram = (Xc @ Xc.T if "cka" in metrics else None) if narrow else _centered_gram(X)
    total = float(np.vdot(Xc, Xc)) if narrow else float(np.trace(gram))  # ||Xc||_F^2 = tr(Kc)
    if not math.isfinite(total):
        raise ValueError(f"activations (shape {np.shape(X)}) contain NaN or infinity")
    if total == 0.0:
        return PreparedRepresentation(n, p, metrics, constant=True)

    factor = None
    if "procrustes" in metrics and narrow:
        # Constant (e.g. dead ReLU) columns would only add exact zero singular values to X^T Y, whose
        # sqrt(rounding noise) inflates the nuclear norm; drop them.
        varying = np.any(Xc, axis=0)
        factor = Xc if varying.all() else Xc[:, varying]
        factor /= math.sqrt(total)  # in place: the Gram (if any) was built already
    elif "procrustes" in metrics:
        factor = _eigen_factor(gram / total)
    if "cka" not in metrics:
        return PreparedRepresentation(n, p, metrics, False, None, factor)
    gram /= math.sqrt(float(np.vdot(gram, gram)))  # in place: the Gram is not needed unscaled
    return PreparedRepresentation(n, p, metrics, False, gram, factor)


def _eigen_factor(K: np.ndarray) -> np.ndarray:
    """Thin factor A (n, r) with ``A A^T = K`` for a PSD (n, n) K, dropping its numerical null space.

    Eigenvalues below ``n * eps * max`` are rounding noise of zeros (the centring alone makes one);
    keeping them would add ``sqrt(noise)`` terms to the nuclear norm.
    """
    eigenvalues, vectors = np.linalg.eigh(K)  # ascending
    first = int(np.searchsorted(eigenvalues, eigenvalues[-1] * K.shape[0] * _EPS, side="right"))
    return vectors[:, first:] * np.sqrt(eigenvalues[first:])


# ------------------------------------------------------------------------------------- pair scores


def _cka_pair(a: PreparedRepresentation, b: PreparedRepresentation) -> float:
    return float(np.vdot(a.cka_gram, b.cka_gram))


def _procrustes_pair(a: PreparedRepresentation, b: PreparedRepresentation) -> float:
    return _nuclear_norm(a.procrustes_factor.T @ b.procrustes_factor)


def _nuclear_norm(M: np.ndarray) -> float:
    """Sum of singular values of M (r_x, r_y) via eigenvalues of the smaller of M^T M and M M^T.

    On this project's 2-core machines ``eigvalsh`` of the small Gram is 3-10x faster than LAPACK's SVD
    at sizes 2000-4000 (and steadier). Tiny negative eigenvalues are rounding noise and clipped to 0.
    """
    small = M.T @ M if M.shape[1] <= M.shape[0] else M @ M.T
    eigenvalues = np.linalg.eigvalsh(small)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


_PAIR_SCORES = {"cka": _cka_pair, "procrustes": _procrustes_pair}


def pair_score(a: PreparedRepresentation, b: PreparedRepresentation, metric: str) -> float:
    """Similarity of two prepared representations; equals ``METRICS[metric]`` on the raw arrays.

    NaN when either representation is constant. Clipped to [0, 1] against rounding.
    """
    (metric,) = _check_metrics(metric)
    for rep in (a, b):
        if metric not in rep.metrics:
            raise ValueError(f"representation was prepared for {rep.metrics}, not for {metric!r}")
    _check_n_pair(a.n_examples, b.n_examples)
    if a.constant or b.constant:
        return float("nan")
    if a is b:
        return 1.0  # both metrics are exactly 1 for a representation against itself
    return float(np.clip(_PAIR_SCORES[metric](a, b), 0.0, 1.0))  # np.clip keeps a NaN a NaN


# ------------------------------------------------------------------------------ metrics on arrays


def linear_cka(X, Y) -> float:
    """Biased linear CKA of X (n, p) and Y (n, q) in Gram form (Kornblith et al. 2019), in [0, 1].

    ``<vec Kc, vec Lc> / (||Kc||_F ||Lc||_F)``, Kc/Lc the Grams of the column-centred inputs.
    Invariant to orthogonal transforms and isotropic scaling of the features. NaN if X or Y is constant.
    """
    check_equal_n_samples(X, Y)
    return pair_score(prepare(X, ("cka",)), prepare(Y, ("cka",)), "cka")


def feature_space_linear_cka(X, Y) -> float:
    """Linear CKA in feature space, ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``.

    Same value as :func:`linear_cka` (Kornblith et al. 2019 demo) but forms p x q products: for tests
    and small p, q only. NaN if X or Y is constant.
    """
    check_equal_n_samples(X, Y)
    Xc, Yc = _centered(_as_2d(X)), _centered(_as_2d(Y))
    norm_x, norm_y = np.linalg.norm(Xc.T @ Xc), np.linalg.norm(Yc.T @ Yc)
    if norm_x == 0.0 or norm_y == 0.0:
        return float("nan")
    return float(np.linalg.norm(Xc.T @ Yc) ** 2 / (norm_x * norm_y))


def procrustes_similarity(X, Y) -> float:
    """Procrustes similarity of X (n, p) and Y (n, q), in [0, 1] (paper Appendix C Eq. 7).

    X <- (X - column means) / ||.||_F, same for Y (Ding et al. 2021); then
    ``1 - (||X||^2 + ||Y||^2 - 2 ||X^T Y||_*) / 2 = ||X^T Y||_*``, computed in example space (see the
    module docstring). Invariant to orthogonal transforms, isotropic scaling and translation. NaN if
    X or Y is constant.
    """
    check_equal_n_samples(X, Y)
    return pair_score(prepare(X, ("procrustes",)), prepare(Y, ("procrustes",)), "procrustes")


def procrustes_distance(X, Y) -> float:
    """Procrustes distance ``sqrt(2 - 2 ||X^T Y||_*)`` on normalised X, Y (the metric form, netrep's
    "euclidean" Procrustes): min over orthogonal Q of ||X - Y Q||_F. In [0, sqrt 2]; NaN if constant."""
    return float(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * procrustes_similarity(X, Y))))


METRICS: dict[str, Callable[..., float]] = {"cka": linear_cka, "procrustes": procrustes_similarity}


# --------------------------------------------------------------------------------- all layer pairs


def score_layer_pairs(
    acts_x: Mapping[str, np.ndarray],
    acts_y: Mapping[str, np.ndarray],
    metrics: Sequence[str],
    layers_x: Sequence[str] | None = None,
    layers_y: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Score every ordered (layer_x, layer_y) pair for every metric; each layer is prepared once.

    acts_x, acts_y: layer name -> (n, ...) activations of the same n examples.
    layers_x, layers_y: layers to compare, in output order (default: the mappings' order).
    Returns columns ``layer_x, layer_y, metric, score, n_examples``, one row per
    (layer_x, layer_y, metric), layer_x outermost. When ``acts_x is acts_y`` each layer is prepared
    once for both sides and each unordered pair is computed once (both metrics are symmetric).
    """
    metrics = _check_metrics(metrics)
    layers_x = list(acts_x) if layers_x is None else list(layers_x)
    layers_y = list(acts_y) if layers_y is None else list(layers_y)
    same = acts_x is acts_y
    prepared_x = _prepare_layers(acts_x, layers_x, metrics, {})
    prepared_y = _prepare_layers(acts_y, layers_y, metrics, prepared_x if same else {})

    scores: dict[tuple[str, str, str], float] = {}
    rows = []
    for lx in layers_x:
        for ly in layers_y:
            for metric in metrics:
                key, mirror = (lx, ly, metric), (ly, lx, metric)
                if same and mirror in scores:
                    scores[key] = scores[mirror]  # both metrics are symmetric
                else:
                    scores[key] = pair_score(prepared_x[lx], prepared_y[ly], metric)
                rows.append((*key, scores[key], prepared_x[lx].n_examples))
    return pd.DataFrame(rows, columns=["layer_x", "layer_y", "metric", "score", "n_examples"])


def _prepare_layers(
    acts: Mapping[str, np.ndarray],
    layers: Sequence[str],
    metrics: tuple[str, ...],
    cache: dict[str, PreparedRepresentation],
) -> dict[str, PreparedRepresentation]:
    """Prepare each named layer once, reusing (and filling) `cache`."""
    missing = [name for name in layers if name not in acts]
    if missing:
        raise KeyError(f"layers {missing} not in activations (available: {list(acts)})")
    for name in layers:
        if name not in cache:
            cache[name] = prepare(acts[name], metrics)
    return cache
