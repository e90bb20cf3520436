"""The exact, cached, batched similarity engine: linear CKA and Procrustes on CPU or CUDA (torch).

Shapes: a representation is an ``(n, p)`` array (n examples, p features; trailing axes flattened).

Expensive work is paid once per representation by :func:`prepare` (spec reference.md §7.2 item 2):

- CKA (Kornblith et al. 2019): the centred Gram ``Kc = Xc Xc^T`` (n x n), built by float32 GEMMs
  over column chunks accumulated in float64 (only the upper block triangle is multiplied), then
  scaled to unit Frobenius norm and stored in float32. ``CKA(X, Y) = <vec Kc_x, vec Kc_y>``, so a
  block of pairs is one stacked GEMM over chunks of the n^2 entries, each chunk's float32 partial
  sums accumulated in float64. Debiased CKA (Song et al. 2012 unbiased HSIC, Kornblith's
  ``center_gram(unbiased=True)``) only changes how the Gram is centred.
- Procrustes (Ding et al. 2021; paper App. C Eq. 7): with X, Y centred and scaled to unit
  Frobenius norm the similarity is ``||X^T Y||_*``. Writing ``X = U_x S_x V_x^T`` it equals
  ``||A_x^T A_y||_*`` for any float64 factor ``A`` (n x r, r <= min(n, p)) with ``A A^T = Kc / tr Kc``:
  the centred features themselves when p <= n, else the eigen-factor of the normalised Gram. A pair
  costs one ``r_x x r_y`` product, its small Gram and the eigenvalues of that Gram: never an SVD of a
  p x q cross-product (up to 32768 x 32768).

Float32 inputs are multiplied in float32 (with float64 accumulation between chunks) for CKA and in
float64 for Procrustes, whose eigenvalue sums amplify rounding; both agree with a float64 reference
to 1e-5 (tests/test_similarity_engine.py). Float64 inputs are computed in float64 throughout.

Constant representations (every column constant, e.g. an all-zero collapsed layer) have no
variance, so both metrics are 0/0. The engine defines them (``constant="defined"``, the default):
0 against a varying representation (no shared structure), 1 against another constant one (equal up
to translation, which both metrics ignore). ``constant="nan"`` reproduces the authors' NaN.
Callers that write tables flag such cells (:func:`is_constant`).
"""

from __future__ import annotations

import contextlib
import math
import uuid
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

#: The metric names of config, wildcards, table rows and the CLI.
METRIC_NAMES = ("cka", "procrustes")

#: Activations with smaller magnitude are set to 0 before scoring (authors' prepare_activations).
ZERO_BELOW = 1e-7

_F64 = torch.float64
_EPS64 = float(np.finfo(np.float64).eps)
_CHUNK_BYTES = 64 * 2**20  # one float32 column chunk of X while building a Gram
_CHUNK_COLUMNS = 4096  # at most: wider (n x k) @ (k x n) products ran slower here
_ROW_BLOCK = 512  # rows per block of the block-triangular Gram product (fastest at n = 1000-5000)
_DOT_CHUNK = 1 << 16  # n^2 entries per float32 partial dot product (then float64)


def check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    """Validated metric names, duplicates dropped, order kept; ValueError naming the bad key."""
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in names if m not in METRIC_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown similarity metric(s) {unknown}; valid keys are {list(METRIC_NAMES)}")
    return tuple(dict.fromkeys(names))


def zero_small(array: np.ndarray, threshold: float = ZERO_BELOW) -> np.ndarray:
    """Zero entries with ``|x| < threshold`` (the authors' ``prepare_activations``, reference.md §5.2).

    array: (n, ...) activations. Works in place when the array is writable (a 5000 x 32768 float32
    layer has no room for a twin), else on a copy. Returns the (n, p) flattened result.
    """
    out = np.asarray(array)
    if not out.flags.writeable:
        out = out.copy()
    out = out.reshape(out.shape[0], -1)
    rows = max(1, _CHUNK_BYTES // max(1, out.itemsize * out.shape[1]))
    for start in range(0, out.shape[0], rows):  # row chunks bound the |x| temporary
        chunk = out[start : start + rows]
        chunk[np.abs(chunk) < threshold] = 0
    return out


@contextlib.contextmanager
def exact_matmul() -> Iterator[None]:
    """Full-precision float32 products on CUDA (no TF32), restored afterwards."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


# ------------------------------------------------------------------------------------- preparing


@dataclass(frozen=True, eq=False)  # identity equality: fields hold tensors
class Prepared:
    """The once-per-representation work of :func:`prepare`.

    n_examples, n_features: shape of the flattened (n, p) representation.
    constant: zero variance (see the module docstring for the scores it gets).
    debiased: the CKA Gram is centred with the unbiased HSIC estimator.
    gram: (n, n) centred Gram scaled to unit Frobenius norm, float32 (float64 for float64 input);
        None unless "cka" was prepared, or when constant.
    factor: (n, r) float64 with ``A A^T = Kc / tr Kc``; None unless "procrustes", or when constant.
    """

    n_examples: int
    n_features: int
    metrics: tuple[str, ...]
    constant: bool
    debiased: bool = False
    gram: torch.Tensor | None = None
    factor: torch.Tensor | None = None

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.gram, self.factor) if t is not None)

    def spill(self, directory: str | Path) -> "Prepared":
        """Copy whose tensors live in .npy files under `directory`, memory-mapped back on use.

        Keeps a shard's memory bounded whatever its number of snapshots; the OS page cache, not
        the process, holds what is being read.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fields = {}
        for name in ("gram", "factor"):
            tensor = getattr(self, name)
            if tensor is not None:
                # a fresh name: id(self) can be reused once an unspilled original is freed
                path = directory / f"{uuid.uuid4().hex}-{name}.npy"
                np.save(path, tensor.cpu().numpy())
                # copy-on-write map: writable for torch, never written back
                fields[name] = torch.from_numpy(np.load(path, mmap_mode="c"))
        return replace(self, **fields)


def as_matrix(X) -> np.ndarray | torch.Tensor:
    """(n, ...) array or tensor -> (n, p) view; ValueError for a scalar."""
    if isinstance(X, torch.Tensor):
        if X.ndim == 0:
            raise ValueError("activations must have a leading example axis, got a scalar")
        return X.reshape(X.shape[0], -1)
    X = np.asarray(X)
    if X.ndim == 0:
        raise ValueError("activations must have a leading example axis, got a scalar")
    return X.reshape(X.shape[0], -1)


def _to_tensor(X, device: str) -> torch.Tensor:
    X = as_matrix(X)
    if not isinstance(X, torch.Tensor):
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float32)
        with warnings.catch_warnings():  # read-only input (e.g. a memory map): never written to
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            X = torch.from_numpy(np.ascontiguousarray(X))
    elif X.dtype not in (torch.float32, _F64):
        X = X.float()
    return X.to(device)


def prepare(
    X, metrics: Sequence[str] | str = METRIC_NAMES, *, device: str = "cpu", debiased: bool = False
) -> Prepared:
    """Centre and normalise one representation X (n, ...) for the given metrics, on `device`.

    Raises ValueError for unknown metrics, fewer than 2 examples (4 when debiased), or NaN/inf.
    Memory: n^2 float32 (CKA) plus up to n min(n, p) float64 (Procrustes) is kept; building them
    needs an n^2 float64 accumulator and, for p > n with Procrustes, an n^2 float64 eigensolve.
    """
    metrics = check_metrics(metrics)
    X = _to_tensor(X, device)
    n, p = X.shape
    if n < (4 if debiased else 2):
        raise ValueError(f"similarity needs at least {4 if debiased else 2} examples, got {n}")
    wide_procrustes = "procrustes" in metrics and p > n
    features = None
    if "procrustes" in metrics and p <= n:
        features = _centred_features(X)  # float64; its squared norm is tr(Kc)
        total = float(torch.sum(features * features))
    gram = None
    if "cka" in metrics or wide_procrustes:
        # The eigen-factor needs a float64 Gram: float32 products leave ~eps32 noise in the null
        # space of a low-rank wide layer, and each noise direction adds sqrt(noise) to ||X^T Y||_*.
        with exact_matmul():
            gram = centred_gram(X, _F64 if wide_procrustes else None)
        if features is None:  # else the exact float64 norm of the features is kept
            total = float(torch.trace(gram))
    if not math.isfinite(total):
        raise ValueError(f"activations (shape {tuple(X.shape)}) contain NaN or infinity")
    if total <= 0.0:
        return Prepared(n, p, metrics, constant=True, debiased=debiased)

    factor = None
    if features is not None:
        factor = _drop_constant_columns(features).div_(math.sqrt(total))
    elif wide_procrustes:
        factor = _eigen_factor(gram / total)
    cka_gram = None
    if "cka" in metrics:
        if debiased:
            _unbiased_centre_(gram)
        norm = float(torch.linalg.matrix_norm(gram))
        if norm == 0.0:  # only possible for degenerate debiased Grams
            return Prepared(n, p, metrics, constant=True, debiased=debiased)
        cka_gram = gram.div_(norm).to(X.dtype)
    return Prepared(n, p, metrics, False, debiased, cka_gram, factor)


def centred_gram(X: torch.Tensor, product_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``Xc Xc^T`` (n, n) in float64 for X (n, p), Xc the column-centred X.

    Columns are centred a chunk at a time in `product_dtype` (default: X's dtype; the leftover
    offset of a mean rounded to it is removed exactly by double-centring the float64 Gram), and
    the chunk's products, in that dtype, are accumulated in float64. A constant column centres to
    exact zeros.
    """
    n, p = X.shape
    dtype = product_dtype or X.dtype
    gram = torch.zeros(n, n, dtype=_F64, device=X.device)
    width = max(1, min(_CHUNK_COLUMNS, _CHUNK_BYTES // (n * X.element_size())))
    for start in range(0, p, width):
        chunk = X[:, start : start + width].to(dtype)
        # The mean in the product dtype is enough (double-centring removes any leftover offset);
        # constant columns use their exact value, so that they centre to exact zeros.
        low = chunk.amin(dim=0)  # (amax and amin separately: 6x faster than aminmax here)
        mean = torch.where(chunk.amax(dim=0) == low, low, chunk.mean(dim=0))
        syrk_(gram, chunk - mean)
    _double_centre_(gram)
    return gram


def syrk_(out: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """``out += A A^T`` for A (n, k), out (n, n) float64, multiplying only the upper block triangle.

    torch has no SYRK; blocks of `_ROW_BLOCK` rows save up to half the flops of a full GEMM.
    """
    n = A.shape[0]
    edges = list(range(0, n, _ROW_BLOCK)) + [n]
    blocks = list(zip(edges[:-1], edges[1:]))
    for i, (a0, a1) in enumerate(blocks):
        for b0, b1 in blocks[i:]:
            product = (A[a0:a1] @ A[b0:b1].T).to(_F64)
            out[a0:a1, b0:b1] += product
            if b0 != a0:
                out[b0:b1, a0:a1] += product.T
    return out


def _double_centre_(K: torch.Tensor) -> None:
    """In place ``H K H``, H = I - 11^T/n (the biased HSIC centring of Kornblith's demo)."""
    means = K.mean(dim=0)
    means -= means.mean() / 2
    K -= means[:, None]
    K -= means[None, :]


def _unbiased_centre_(K: torch.Tensor) -> None:
    """In place unbiased HSIC centring (Song et al. 2012; Kornblith's ``center_gram(unbiased=True)``)."""
    n = K.shape[0]
    K.fill_diagonal_(0.0)
    means = K.sum(dim=0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    K -= means[:, None]
    K -= means[None, :]
    K.fill_diagonal_(0.0)


def _centred_features(X: torch.Tensor) -> torch.Tensor:
    """Column-centred float64 copy of X (n, p). Constant columns centre to exact zeros (the
    float64 sum of n equal float32 values is exact)."""
    Xc = X.to(_F64)
    return Xc.sub_(Xc.mean(dim=0))


def _drop_constant_columns(Xc: torch.Tensor) -> torch.Tensor:
    """Constant (e.g. dead ReLU) columns would only add exact zero singular values whose
    sqrt(rounding noise) inflates the nuclear norm."""
    varying = torch.any(Xc != 0, dim=0)
    return Xc if bool(varying.all()) else Xc[:, varying]


def _eigen_factor(K: torch.Tensor) -> torch.Tensor:
    """Thin factor A (n, r) with ``A A^T = K`` for a PSD (n, n) float64 K, numerical null space dropped.

    Eigenvalues below ``n eps max`` are rounding noise of zeros (centring alone makes one); keeping
    them would add ``sqrt(noise)`` terms to the nuclear norm.
    """
    eigenvalues, vectors = torch.linalg.eigh(K)  # ascending
    cutoff = float(eigenvalues[-1]) * K.shape[0] * _EPS64
    first = int(torch.searchsorted(eigenvalues, torch.tensor([cutoff], dtype=_F64, device=K.device), right=True))
    return (vectors[:, first:] * eigenvalues[first:].sqrt()).contiguous()


# ------------------------------------------------------------------------------------- scoring


def cka_block(xs: Sequence[Prepared], ys: Sequence[Prepared], device: str = "cpu") -> torch.Tensor:
    """``<Gram_x, Gram_y>`` for every (x, y): (len(xs), len(ys)) float64; constant ones give 0.

    Chunks of `_DOT_CHUNK` Gram entries of every representation are stacked and multiplied (float32
    partial sums, float64 accumulation), so memory stays at a few chunks whatever the block size.
    """
    out = torch.zeros(len(xs), len(ys), dtype=_F64, device=device)
    live_x = [i for i, r in enumerate(xs) if not r.constant]
    live_y = [j for j, r in enumerate(ys) if not r.constant]
    if not live_x or not live_y:
        return out
    flat_x = [xs[i].gram.reshape(-1) for i in live_x]
    flat_y = [ys[j].gram.reshape(-1) for j in live_y]
    same = [xs[i] for i in live_x] == [ys[j] for j in live_y]
    # float64 when either side is (e.g. a workflow dump against a user's float64 file)
    dtype = torch.promote_types(flat_x[0].dtype, flat_y[0].dtype)
    for flat in (flat_x, flat_y):
        if any(f.dtype != dtype for f in flat):
            dtype = _F64
    acc = torch.zeros(len(live_x), len(live_y), dtype=_F64, device=device)
    size = flat_x[0].numel()
    with exact_matmul():
        for start in range(0, size, _DOT_CHUNK):
            a = torch.stack([f[start : start + _DOT_CHUNK].to(device, dtype) for f in flat_x])
            b = a if same else torch.stack([f[start : start + _DOT_CHUNK].to(device, dtype) for f in flat_y])
            acc += (a @ b.T).to(_F64)
    out[np.ix_(live_x, live_y)] = acc
    return out


def nuclear_similarity(a: Prepared, b: Prepared, device: str = "cpu") -> float:
    """``||A_a^T A_b||_*`` of two prepared Procrustes factors (0 if either is constant).

    The singular values of M = A_a^T A_b (r_a x r_b) are the square roots of the eigenvalues of the
    smaller of M^T M and M M^T (eigvalsh is several times faster than an SVD here); tiny negative
    eigenvalues are rounding noise, clipped to 0.
    """
    if a.constant or b.constant:
        return 0.0
    if torch.device(device).type == "cpu" and not TORCH_PAIRS_ON_CPU:
        return _nuclear_similarity_numpy(a.factor.numpy(), b.factor.numpy())
    A, B = a.factor.to(device), b.factor.to(device)
    M = A.T @ B
    if M.shape[1] < M.shape[0]:
        M = M.T
    small = syrk_(torch.zeros(M.shape[0], M.shape[0], dtype=_F64, device=device), M)
    return float(torch.linalg.eigvalsh(small).clamp_min_(0.0).sqrt_().sum())



#: On CPU the pair arithmetic goes through numpy (OpenBLAS: SYRK for M M^T and LAPACK's dsyevd),
#: measured 1.4x faster per 1000-wide pair than torch on the development machines; the numbers
#: are the same to rounding (tests run both). Set True to use torch on CPU too.
TORCH_PAIRS_ON_CPU = False


def _nuclear_similarity_numpy(A: np.ndarray, B: np.ndarray) -> float:
    M = A.T @ B
    small = M @ M.T if M.shape[0] <= M.shape[1] else M.T @ M  # numpy dispatches these to SYRK
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(small), 0.0, None)).sum())
