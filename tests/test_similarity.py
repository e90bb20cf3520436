"""vaetransfer.similarity: exactness against float64 references, invariances, closed forms,
constant (collapsed) representations, the block API, spilling, preprocessing and CPU/CUDA agreement.

The references (vaetransfer.similarity.reference, plus a few written here) follow the textbook
formulas in float64, independently of the engine's example-space shortcuts. Metric tests are
parametrised over seeds (netrep / Kornblith-demo style). The contract is 1e-5 absolute for float32
activations and far tighter (1e-10) for float64 ones.
"""

import math
import warnings

import numpy as np
import pytest
import torch

import vaetransfer.similarity as sim
from vaetransfer.similarity import (
    METRIC_NAMES,
    METRICS,
    Prepared,
    constant_flags,
    linear_cka,
    pairwise,
    prepare,
    procrustes_distance,
    procrustes_similarity,
    zero_small,
)
from vaetransfer.similarity import engine, reference

SEEDS = [0, 1, 2]
F32_TOL = 1e-5  # the contract for float32 activations
F64_TOL = 1e-10  # float64 activations are computed in float64 throughout
ONE = {"cka": linear_cka, "procrustes": procrustes_similarity}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run this module single-threaded (torch and numpy's BLAS), restored afterwards.

    On a small, shared machine, OpenMP/BLAS threads spinning against other processes made the
    large cases (eigh, Grams) 5-10x slower than one thread; only rounding depends on this.
    """
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def rng_for(seed):
    return np.random.default_rng(seed)


def random_orthogonal(rng, p):
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))


def offset_data(rng, n, p, dtype=np.float64):
    """Gaussian data with non-zero column means, so that centring matters."""
    return (rng.standard_normal((n, p)) + rng.uniform(-5, 5, size=p)).astype(dtype)


def structured(rng, n, widths, *, rank=6, noise=1.0, dtype=np.float32):
    """ReLU layers of a shared low-rank signal plus private signal and noise, like real activations.

    iid noise alone would make every score ~0 and hide errors; here scores sit well inside (0, 1).
    Generated in float32 (wide layers are large).
    """
    shared = rng.standard_normal((n, rank), dtype=np.float32)
    layers = []
    for p in widths:
        private = rng.standard_normal((n, rank), dtype=np.float32)
        latent = np.concatenate([shared, private], axis=1)
        W = rng.standard_normal((2 * rank, p), dtype=np.float32) / np.float32(math.sqrt(rank))
        pre = latent @ W
        pre += np.float32(noise) * rng.standard_normal((n, p), dtype=np.float32)
        pre += rng.uniform(-0.5, 0.5, size=p).astype(np.float32)
        layers.append(np.maximum(pre, 0).astype(dtype))
    return layers


def orthonormal_centred(rng, n, k):
    """(n, k) float64 with orthonormal columns that are all centred: B^T B = I, 1^T B = 0.

    QR of centred columns: Q's columns span the same space, orthogonal to the ones vector.
    """
    A = rng.standard_normal((n, k))
    B, _ = np.linalg.qr(A - A.mean(axis=0))
    assert np.allclose(B.T @ B, np.eye(k)) and np.allclose(B.sum(axis=0), 0)
    return B


def centred64(X):
    X = np.asarray(X, np.float64).reshape(len(X), -1)
    return X - X.mean(axis=0)


def cka_of_grams(K, L):
    """Linear CKA from two centred float64 Grams (what reference.cka_reference returns)."""
    return float(np.vdot(K, L) / (np.linalg.norm(K) * np.linalg.norm(L)))


def check_against_references(X, Y, tol, *, wide_procrustes=False):
    """Both metrics (and debiased CKA) of the engine vs the float64 references, to `tol`."""
    got_cka = linear_cka(X, Y)
    assert got_cka == pytest.approx(reference.cka_reference(X, Y), abs=tol)
    assert linear_cka(X, Y, debiased=True) == pytest.approx(
        reference.cka_reference(X, Y, debiased=True), abs=tol
    )
    proc_ref = (
        reference.procrustes_example_space_reference(X, Y)
        if wide_procrustes
        else reference.procrustes_reference(X, Y)
    )
    got_proc = procrustes_similarity(X, Y)
    assert got_proc == pytest.approx(proc_ref, abs=tol)
    return got_cka, got_proc


# ------------------------------------------------------------------------- the references agree


def test_references_agree_with_each_other():
    # The references used below must themselves be right: Gram form = feature form for CKA,
    # p x q SVD = example-space SVD for Procrustes; debiased CKA differs from biased.
    rng = rng_for(0)
    for n, p, q in [(40, 7, 13), (30, 60, 45)]:
        X, Y = offset_data(rng, n, p), offset_data(rng, n, q)
        Y[:, :3] += 2 * X[:, :3]
        assert reference.cka_reference(X, Y) == pytest.approx(reference.feature_cka_reference(X, Y), abs=1e-12)
        assert reference.procrustes_reference(X, Y) == pytest.approx(
            reference.procrustes_example_space_reference(X, Y), abs=1e-12
        )
        assert reference.naive_cka(X, Y) == pytest.approx(reference.cka_reference(X, Y), abs=1e-12)
        assert reference.naive_procrustes(X, Y) == pytest.approx(reference.procrustes_reference(X, Y), abs=1e-12)
        assert abs(reference.cka_reference(X, Y, True) - reference.cka_reference(X, Y)) > 1e-3


# ------------------------------------------------------------------ exactness: float32 vs float64


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "n,p,q,wide",
    [
        (200, 30, 50, False),  # both narrow: centred-feature factors
        (120, 400, 90, False),  # wide vs narrow
        (150, 300, 700, True),  # both wide: Gram eigen-factors
        (150, 150, 149, False),  # p = n and p = n - 1 (the switch between the two factor paths)
    ],
)
def test_float32_matches_float64_references(seed, n, p, q, wide):
    rng = rng_for(seed)
    X, Y = structured(rng, n, [p, q])
    cka, proc = check_against_references(X, Y, F32_TOL, wide_procrustes=wide)
    assert 0.05 < cka < 0.98 and 0.05 < proc < 0.98  # a meaningful value, not ~0 or ~1


@pytest.mark.parametrize("seed", SEEDS)
def test_offset_data_stresses_centring(seed):
    # 1000 + N(0, 1) in float32: the offset is ~10^4 times the signal's spread, so an uncentred
    # float32 Gram, or centring that rounds the mean carelessly, would lose the digits.
    # n > _ROW_BLOCK; X narrow (feature factor), Y wider than n (Gram eigen-factor).
    rng = rng_for(seed)
    n = 1100
    Z = rng.standard_normal((n, 4))
    X = (1000 + Z @ rng.standard_normal((4, 60)) + rng.standard_normal((n, 60))).astype(np.float32)
    Y = (1000 + np.tanh(Z) @ rng.standard_normal((4, 1200)) + rng.standard_normal((n, 1200))).astype(np.float32)
    assert np.abs(X.mean(axis=0) - 1000).max() < 10
    PX, PY = prepare(X, METRIC_NAMES), prepare(Y, METRIC_NAMES)
    cka = pairwise([PX], [PY], "cka")[0, 0]
    K, L = (centred64(A) @ centred64(A).T for A in (X, Y))  # float64 Grams of centred data
    assert cka == pytest.approx(cka_of_grams(K, L), abs=F32_TOL)
    assert pairwise([PX], [PY], "procrustes")[0, 0] == pytest.approx(
        reference.procrustes_reference(X, Y), abs=F32_TOL
    )
    assert 0.1 < cka < 0.95
    # Debiased: the reference centres the raw (uncentred, offset) float64 Gram.
    assert linear_cka(X, Y, debiased=True) == pytest.approx(
        reference.cka_reference(X, Y, debiased=True), abs=F32_TOL
    )


def test_wide_32768_features_match_float64_references():
    # A layer as wide as the paper's widest (32768 features) at moderate n; n > _ROW_BLOCK, so the
    # block-triangular Gram has two (unequal) row blocks. X is wide (Gram eigen-factor), Y narrow
    # (centred features), Z wider than n as well.
    n = 1050
    assert n > engine._ROW_BLOCK and n * n > engine._DOT_CHUNK
    rng = rng_for(0)
    X, Y, Z = structured(rng, n, [32768, 256, 1300], rank=8)
    Ps = [prepare(A, METRIC_NAMES) for A in (X, Y, Z)]
    cka = pairwise(Ps, Ps, "cka")
    proc = pairwise(Ps, Ps, "procrustes")

    grams = [centred64(A) @ centred64(A).T for A in (X, Y, Z)]  # float64 Gram reference
    for i in range(3):
        for j in range(3):
            assert cka[i, j] == pytest.approx(cka_of_grams(grams[i], grams[j]), abs=F32_TOL)
    # Procrustes: Eq. 7 literally (SVD of the 32768 x 256 cross-product) for X vs Y, Z vs Y.
    proc_xy = reference.procrustes_reference(X, Y)
    assert proc[0, 1] == pytest.approx(proc_xy, abs=F32_TOL)
    assert proc[1, 0] == pytest.approx(proc_xy, abs=F32_TOL)
    assert proc[2, 1] == pytest.approx(reference.procrustes_reference(Z, Y), abs=F32_TOL)
    # X vs Z, both wider than n (a 32768 x 1300 SVD would be slow): the squared singular values
    # of Xn^T Zn are the eigenvalues of Kx Kz (normalised centred float64 Grams), computed here
    # without the engine's factors or cut-offs.
    Kx, Kz = grams[0] / np.trace(grams[0]), grams[2] / np.trace(grams[2])
    eig = np.linalg.eigvals(Kx @ Kz).real
    assert proc[0, 2] == pytest.approx(np.sqrt(np.clip(eig, 0, None)).sum(), abs=F32_TOL)
    assert 0.05 < cka[0, 1] < 0.98 and 0.05 < proc[0, 1] < 0.98


@pytest.mark.parametrize("dtype,tol", [(np.float64, F64_TOL), (np.float32, F32_TOL)])
@pytest.mark.parametrize("n,p,rank", [(300, 1000, 5), (400, 1200, 20)])
def test_wide_low_rank_layer_matches_references(dtype, tol, n, p, rank):
    # A layer wider than n whose activations have low rank (an affine map of a few latents, as
    # in a linear layer fed by the code): its centred Gram has a large null space. Rounding noise
    # in that null space must not turn into spurious factor directions: each would add
    # sqrt(noise) terms to the nuclear norm. Y: a narrow ReLU layer sharing part of the latents.
    rng = rng_for(n)
    latent = rng.standard_normal((n, rank))
    X = latent @ rng.standard_normal((rank, p)) + rng.uniform(-3, 3, p)
    assert np.linalg.matrix_rank(centred64(X)) == rank  # exactly, before rounding to `dtype`
    X = X.astype(dtype)
    Y = np.maximum(latent[:, :3] @ rng.standard_normal((3, 40)) + rng.standard_normal((n, 40)), 0).astype(dtype)
    proc = procrustes_similarity(X, Y)
    assert proc == pytest.approx(reference.procrustes_reference(X, Y), abs=tol)
    assert linear_cka(X, Y) == pytest.approx(reference.cka_reference(X, Y), abs=tol)
    assert 0.05 < proc < 0.98


def test_ten_thousand_examples_narrow_layers():
    # n = 10,000 (the paper's largest): ten row blocks in the Gram, n^2 >> _DOT_CHUNK partial dots.
    n = 10_000
    assert n > 4 * engine._ROW_BLOCK and n * n > 100 * engine._DOT_CHUNK
    rng = rng_for(1)
    X, Y = structured(rng, n, [10, 256], rank=4)
    X += 3.0  # an offset on top
    PX, PY = prepare(X, METRIC_NAMES), prepare(Y, METRIC_NAMES)
    cka = pairwise([PX], [PY], "cka")[0, 0]
    assert cka == pytest.approx(reference.feature_cka_reference(X, Y), abs=F32_TOL)
    proc = pairwise([PX], [PY], "procrustes")[0, 0]
    assert proc == pytest.approx(reference.procrustes_reference(X, Y), abs=F32_TOL)
    assert 0.05 < cka < 0.98 and 0.05 < proc < 0.98


@pytest.mark.parametrize("dtype,tol", [(np.float64, F64_TOL), (np.float32, F32_TOL)])
@pytest.mark.parametrize("n,block", [(53, 7), (90, 16)])
def test_many_small_blocks_and_chunks(monkeypatch, dtype, tol, n, block):
    # Shrink the engine's blocking so that every loop runs many, ragged iterations: row blocks
    # (n not a multiple), 100-entry partial dot products, column chunks of 8 features.
    monkeypatch.setattr(engine, "_ROW_BLOCK", block)
    monkeypatch.setattr(engine, "_DOT_CHUNK", 100)
    monkeypatch.setattr(engine, "_CHUNK_BYTES", 8 * n * np.dtype(dtype).itemsize)
    rng = rng_for(n)
    X, Y, Z = (offset_data(rng, n, p, dtype) for p in (11, 40, 2 * n))
    Y[:, :5] += X[:, :5]
    Z[:, :5] -= X[:, :5]
    check_against_references(X, Y, tol)
    check_against_references(Z, X, tol)
    check_against_references(Z, Y, tol, wide_procrustes=True)
    A = torch.from_numpy(X)
    expected = A.double() @ A.double().T
    assert torch.allclose(engine.syrk_(torch.zeros(n, n, dtype=torch.float64), A), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_float64_input_stays_float64(seed):
    rng = rng_for(seed)
    X, Y, Z = offset_data(rng, 80, 12), offset_data(rng, 80, 30), offset_data(rng, 80, 200)
    Y[:, :4] += X[:, :4]
    Z[:, :4] += X[:, :4]
    P = prepare(X, METRIC_NAMES)
    assert P.gram.dtype == torch.float64 and P.factor.dtype == torch.float64
    assert prepare(Z, METRIC_NAMES).gram.dtype == torch.float64
    P32 = prepare(X.astype(np.float32), METRIC_NAMES)
    assert P32.gram.dtype == torch.float32 and P32.factor.dtype == torch.float64
    check_against_references(X, Y, F64_TOL)
    check_against_references(Z, Y, F64_TOL)
    check_against_references(Z, X, F64_TOL, wide_procrustes=True)


# ------------------------------------------------------------------ invariances and closed forms


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,p", [(60, 12), (25, 70)])
@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_orthogonal_scale_translation_invariance(seed, n, p, metric):
    rng = rng_for(seed)
    X, Y = offset_data(rng, n, p), offset_data(rng, n, 9)
    Q, s, t = random_orthogonal(rng, p), rng.uniform(0.1, 10), rng.normal(size=p) * 100
    f = ONE[metric]
    assert f(X, s * X @ Q + t) == pytest.approx(1.0, abs=1e-10)
    assert f(X, X.copy()) == pytest.approx(1.0, abs=1e-12)
    base = f(X, Y)
    assert base < 0.99
    assert f(s * X @ Q + t, Y) == pytest.approx(base, abs=1e-10)
    assert f(X, 0.01 * Y - 3) == pytest.approx(base, abs=1e-10)
    # float32: same invariances within the float32 contract
    X32, T32 = X.astype(np.float32), (s * X @ Q + t).astype(np.float32)
    assert f(X32, T32) == pytest.approx(1.0, abs=F32_TOL)
    if metric == "cka":
        assert linear_cka(X, s * X @ Q + t, debiased=True) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_cka_not_invariant_to_invertible_non_orthogonal_map(seed):
    rng = rng_for(seed)
    n, p = 80, 10
    X, Y = offset_data(rng, n, p), offset_data(rng, n, 6)
    # Anisotropic scaling between two rotations: invertible (condition number e^4), not orthogonal.
    W = random_orthogonal(rng, p) @ np.diag(np.exp(np.linspace(-2, 2, p))) @ random_orthogonal(rng, p)
    assert abs(np.linalg.det(W)) > 1e-6
    assert linear_cka(X, X @ W) < 0.95
    assert abs(linear_cka(X @ W, Y) - linear_cka(X, Y)) > 1e-3
    assert procrustes_similarity(X, X @ W) < 0.99


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,p,q", [(60, 12, 8), (25, 70, 40), (30, 10, 90)])
def test_symmetric_and_bounded(seed, n, p, q):
    rng = rng_for(seed)
    X, Y = offset_data(rng, n, p), offset_data(rng, n, q)
    Y[:, 0] += X[:, 0]
    for metric, f in ONE.items():
        v = f(X, Y)
        assert 0.0 <= v < 0.99
        assert f(Y, X) == pytest.approx(v, abs=1e-12)
        grid = pairwise([X, Y], [X, Y], metric)
        assert np.all((grid >= 0) & (grid <= 1))
    d = linear_cka(X, Y, debiased=True)
    assert -1.0 <= d <= 1.0 and linear_cka(Y, X, debiased=True) == pytest.approx(d, abs=1e-12)
    assert procrustes_distance(X, Y) == pytest.approx(math.sqrt(2 - 2 * procrustes_similarity(X, Y)), abs=1e-12)
    assert procrustes_distance(Y, X) == pytest.approx(procrustes_distance(X, Y), abs=1e-12)


# Procrustes sums sqrt(eigenvalues of M^T M), M = X^T Y: an exactly-zero singular value comes out
# as sqrt(rounding noise of M^T M) ~ sqrt(eps) sigma_max ~ 1e-9 here even in float64 (observed up
# to 3.3e-9 on these closed forms), hence the looser float64 tolerance for Procrustes only.
PROC_F64_ZERO_SV_TOL = 1e-7


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, F32_TOL)])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k,j", [(4, 1), (5, 3), (3, 0), (6, 6), (40, 13)])
def test_closed_forms_on_orthonormal_centred_columns(dtype, tol, seed, k, j):
    # B: orthonormal centred columns, so Xc = X for any selection of them, and X^T X = I.
    # X = k columns of B, Y = k columns of B sharing j of them with X (in another order).
    # X^T Y is a k x k partial permutation with j ones:
    #   CKA = ||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F) = j / (sqrt(k) sqrt(k)) = j / k;
    #   Procrustes: X/||X||_F = X/sqrt(k), same for Y, ||X^T Y||_* / k = j / k.
    # Y = first m columns of X (X^T Y = [I_m; 0]): CKA = m / (sqrt(k) sqrt(m)) = sqrt(m / k) and
    #   Procrustes = m / (sqrt(k) sqrt(m)) = sqrt(m / k).
    # Y = X2 diag(d), X2 two columns (X2^T Y = diag(d), Y^T Y = diag(d^2)):
    #   CKA = sum d^2 / (sqrt(2) sqrt(sum d^4)) = 5 / sqrt(34) for d = (1, 2);
    #   Procrustes = sum |d| / (sqrt(2) sqrt(sum d^2)) = 3 / sqrt(10).
    rng = rng_for(seed)
    n = 200
    B = orthonormal_centred(rng, n, 2 * k)
    X = B[:, :k]
    Y = np.concatenate([B[:, :j][:, ::-1], B[:, k : 2 * k - j]], axis=1)
    assert Y.shape == (n, k)
    X, Y = X.astype(dtype), Y.astype(dtype)
    ptol = max(tol, PROC_F64_ZERO_SV_TOL)
    assert linear_cka(X, Y) == pytest.approx(j / k, abs=tol)
    assert procrustes_similarity(X, Y) == pytest.approx(j / k, abs=ptol)

    m = max(1, k // 3)
    assert linear_cka(X, X[:, :m]) == pytest.approx(math.sqrt(m / k), abs=tol)
    assert procrustes_similarity(X, X[:, :m]) == pytest.approx(math.sqrt(m / k), abs=ptol)

    X2 = B[:, :2].astype(dtype)
    Y2 = (B[:, :2] @ np.diag([1.0, 2.0])).astype(dtype)
    assert linear_cka(X2, Y2) == pytest.approx(5 / math.sqrt(34), abs=tol)
    assert procrustes_similarity(X2, Y2) == pytest.approx(3 / math.sqrt(10), abs=ptol)


@pytest.mark.parametrize("seed", SEEDS)
def test_cka_of_independent_gaussians_is_near_zero(seed):
    # E[CKA] ~ sqrt(pq)/n for independent X, Y with n >> p, q: about 0.0025 here.
    rng = rng_for(seed)
    X, Y = rng.standard_normal((2000, 5)), rng.standard_normal((2000, 5))
    assert linear_cka(X, Y) < 0.02
    assert abs(linear_cka(X, Y, debiased=True)) < 0.02
    assert linear_cka(X, X + 0.5 * Y) > 0.5  # the bound is not vacuous


def test_procrustes_is_not_cka():
    rng = rng_for(0)
    X = offset_data(rng, 50, 6)
    Y = X @ np.diag([1, 1, 1, 5, 5, 5])
    assert abs(procrustes_similarity(X, Y) - linear_cka(X, Y)) > 1e-2


@pytest.mark.parametrize("seed", SEEDS)
def test_procrustes_distance(seed):
    rng = rng_for(seed)
    X, Y = offset_data(rng, 40, 6), offset_data(rng, 40, 9)
    Q = random_orthogonal(rng, 6)
    assert procrustes_distance(X, 2 * X @ Q + 1) < 1e-6
    ref = reference.procrustes_reference(X, Y)
    assert procrustes_distance(X, Y) == pytest.approx(math.sqrt(2 - 2 * ref), abs=1e-10)
    # = min over orthogonal R of ||Xn - Yn R||_F (the Procrustes problem), here with p = q = 6
    Xn, Yn = (centred64(A) / np.linalg.norm(centred64(A)) for A in (X, Y[:, :6]))
    U, _, Vt = np.linalg.svd(Yn.T @ Xn)
    assert procrustes_distance(X, Y[:, :6]) == pytest.approx(np.linalg.norm(Xn - Yn @ U @ Vt), abs=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_dead_units_match_references(seed):
    # Dead (constant) units add exact zero singular values to X^T Y, which must not contribute
    # sqrt(rounding noise) each to the nuclear norm; dropping them changes nothing.
    rng = rng_for(seed)
    X, Y = offset_data(rng, 200, 120), offset_data(rng, 200, 150)
    Y[:, :20] += X[:, :20]
    X[:, ::2] = 0.0
    Y[:, 1::3] = 2.5
    for dtype, tol in [(np.float64, 1e-12), (np.float32, F32_TOL)]:
        X_, Y_ = X.astype(dtype), Y.astype(dtype)
        assert procrustes_similarity(X_, Y_) == pytest.approx(reference.procrustes_reference(X_, Y_), abs=tol)
        assert procrustes_similarity(X_, Y_) == pytest.approx(procrustes_similarity(X_[:, 1::2], Y_), abs=tol)
        assert linear_cka(X_, Y_) == pytest.approx(reference.cka_reference(X_, Y_), abs=tol)
    # wide and mostly dead (a ReLU layer wider than n)
    W = np.maximum(offset_data(rng, 60, 500) - 4, 0)
    W[:, :250] = 0
    assert procrustes_similarity(W, X[:60]) == pytest.approx(reference.procrustes_reference(W, X[:60]), abs=1e-10)


# ------------------------------------------------------------ constant (collapsed) representations


def constant_layers(n, p):
    """Collapsed layers: all zero, one non-zero constant (not its own float mean), per-unit constants."""
    return {
        "zeros32": np.zeros((n, p), np.float32),
        "zeros64": np.zeros((n, p)),
        "point1_64": np.full((n, p), 0.1),
        "point1_32": np.full((n, p), 0.1, np.float32),
        "per_unit": np.tile(np.linspace(-3.3, 7.1, p), (n, 1)),
        "conv": np.full((n, 2, 3, p), -1e3, np.float32),
    }


@pytest.mark.parametrize("n,p", [(60, 12), (25, 70)])
@pytest.mark.parametrize("kind", list(constant_layers(2, 2)))
def test_constant_representations(n, p, kind):
    rng = rng_for(0)
    C = constant_layers(n, p)[kind]
    C2 = np.full((n, 5), 7.0, C.dtype)  # another constant layer
    X = offset_data(rng, n, 5, C.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (0/0, sqrt of negative, ...)
        assert prepare(C, METRIC_NAMES).constant
        assert prepare(C, "cka", debiased=True).constant
        assert not prepare(X, METRIC_NAMES).constant
        assert list(constant_flags([prepare(C, "cka"), prepare(X, "cka"), prepare(C2, "cka")])) == [True, False, True]
        for metric in METRIC_NAMES:
            for debiased in ([False, True] if metric == "cka" else [False]):
                kw = dict(debiased=debiased)
                grid = pairwise([C, X, C2], [C, X, C2], metric, **kw)
                np.testing.assert_array_equal(grid, [[1, 0, 1], [0, 1, 0], [1, 0, 1]])
                grid = pairwise([C, X], [X, C2, C.copy()], metric, **kw)
                np.testing.assert_array_equal(grid, [[0, 1, 1], [1, 0, 0]])
                nan = pairwise([C, X], [X, C2, C], metric, constant="nan", **kw)
                assert np.isnan(nan[0]).all() and np.isnan(nan[:, 1:]).all()
                assert nan[1, 0] == 1.0
        assert linear_cka(C, X) == 0.0 and linear_cka(X, C) == 0.0 and linear_cka(C, C2) == 1.0
        assert procrustes_similarity(C, X) == 0.0 and procrustes_similarity(C, C2) == 1.0
        assert procrustes_distance(C, X) == pytest.approx(math.sqrt(2)) and procrustes_distance(C, C2) == 0.0


def test_constant_choice_is_validated():
    X = offset_data(rng_for(0), 10, 3)
    with pytest.raises(ValueError, match="constant must be one of"):
        pairwise([X], [X], "cka", constant="zero")


def test_zero_small_turns_a_tiny_layer_constant():
    rng = rng_for(0)
    n = 50
    tiny = rng.uniform(-9e-8, 9e-8, size=(n, 20)).astype(np.float32)
    X = offset_data(rng, n, 4, np.float32)
    # the metrics themselves do not threshold: tiny values are a varying (scale-invariant) layer
    assert not prepare(tiny.copy(), METRIC_NAMES).constant
    assert linear_cka(tiny, tiny * np.float32(1e7)) == pytest.approx(1.0, abs=F32_TOL)
    zeroed = zero_small(tiny)
    assert not zeroed.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prepare(zeroed, METRIC_NAMES).constant
        assert constant_flags([prepare(zeroed, "procrustes"), prepare(X, "procrustes")]).tolist() == [True, False]
        assert linear_cka(zeroed, X) == 0.0 and procrustes_similarity(zeroed, X) == 0.0


# ----------------------------------------------------------------------------------- block API


def layers(rng, n, widths, dtype=np.float64):
    return [A.reshape(n, -1) for A in structured(rng, n, widths, rank=3, noise=0.7, dtype=dtype)]


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
@pytest.mark.parametrize("metric,debiased", [("cka", False), ("cka", True), ("procrustes", False)])
def test_pairwise_cells_equal_single_pairs(dtype, tol, metric, debiased):
    rng = rng_for(4)
    n = 40
    xs = layers(rng, n, [5, 60, 30, 2], dtype)
    ys = layers(rng, n, [45, 3, 12], dtype)
    ys[2] = ys[2].reshape(n, 3, 2, 2)  # conv-shaped activations are flattened
    grid = pairwise(xs, ys, metric, debiased=debiased)
    assert grid.shape == (4, 3) and grid.dtype == np.float64
    kw = {"debiased": debiased} if metric == "cka" else {}
    for i, X in enumerate(xs):
        for j, Y in enumerate(ys):
            assert grid[i, j] == pytest.approx(ONE[metric](X, Y, **kw), abs=tol)
    assert len(np.unique(np.round(grid, 6))) == grid.size  # the cells really differ
    assert pairwise(xs, [], metric).shape == (4, 0) and pairwise([], ys, metric).shape == (0, 3)
    # torch tensors are accepted too
    tgrid = pairwise([torch.from_numpy(X) for X in xs], ys, metric, debiased=debiased)
    np.testing.assert_allclose(tgrid, grid, atol=tol)


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_each_array_prepared_once(monkeypatch, metric):
    calls = []
    real_prepare = sim.prepare

    def spy(X, *args, **kwargs):
        calls.append(id(X))
        return real_prepare(X, *args, **kwargs)

    monkeypatch.setattr(sim, "prepare", spy)
    rng = rng_for(0)
    a, b, c, d = layers(rng, 20, [3, 30, 8, 5])
    grid = pairwise([a, b, c, a], [b, d, a], metric)
    assert sorted(calls) == sorted(map(id, [a, b, c, d]))
    assert grid[0, 2] == 1.0 and grid[3, 2] == 1.0 and grid[0, 0] == grid[3, 0]

    calls.clear()
    same = [a, b, c]
    pairwise(same, same, metric)
    assert sorted(calls) == sorted(map(id, same))
    # already-prepared inputs are not prepared again
    calls.clear()
    P = real_prepare(a, metric)
    pairwise([P, b], [P], metric)
    assert calls == [id(b)]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("metric,debiased", [("cka", False), ("cka", True), ("procrustes", False)])
def test_same_list_twice_is_symmetric_with_unit_diagonal(seed, metric, debiased):
    rng = rng_for(seed)
    reps = layers(rng, 25, [4, 40, 10, 25])
    reps.append(reps[1].copy())  # an equal array, not the same object: computed, not set
    grid = pairwise(reps, reps, metric, debiased=debiased)
    assert grid.shape == (5, 5)
    np.testing.assert_array_equal(np.diag(grid), 1.0)
    np.testing.assert_allclose(grid, grid.T, rtol=0, atol=1e-14)
    assert grid[1, 4] == pytest.approx(1.0, abs=1e-10)
    off = grid[np.triu_indices(4, 1)]
    assert (off < 1 - 1e-3).all()
    # the symmetric shortcut equals the general path
    np.testing.assert_allclose(pairwise(reps, list(reps), metric, debiased=debiased), grid, atol=1e-12)


def test_prepared_objects_accepted_and_checked():
    rng = rng_for(1)
    X, Y = layers(rng, 30, [50, 7])
    both = prepare(X, METRIC_NAMES)
    assert isinstance(both, Prepared) and both.n_examples == 30 and both.n_features == 50
    for metric in METRIC_NAMES:
        direct = pairwise([X], [Y], metric)
        np.testing.assert_allclose(pairwise([both], [Y], metric), direct, atol=1e-12)
        np.testing.assert_allclose(pairwise([prepare(X, metric)], [prepare(Y, metric)], metric), direct, atol=1e-12)
    deb = prepare(X, "cka", debiased=True)
    np.testing.assert_allclose(
        pairwise([deb], [Y], "cka", debiased=True), pairwise([X], [Y], "cka", debiased=True), atol=1e-12
    )
    with pytest.raises(ValueError, match="not for 'procrustes'"):
        pairwise([prepare(X, "cka")], [Y], "procrustes")
    with pytest.raises(ValueError, match="not for 'cka'"):
        pairwise([X], [prepare(Y, "procrustes")], "cka")
    with pytest.raises(ValueError, match="debiased=True"):
        pairwise([deb], [Y], "cka")
    with pytest.raises(ValueError, match="debiased=False"):
        pairwise([X], [prepare(Y, "cka")], "cka", debiased=True)


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_different_n_raises_with_row_counts(metric):
    rng = rng_for(0)
    a, b, c = rng.standard_normal((10, 3)), rng.standard_normal((10, 4)), rng.standard_normal((12, 3))
    with pytest.raises(ValueError, match=r"\[10, 10\].*\[12\]"):
        pairwise([a, b], [c], metric)
    with pytest.raises(ValueError, match=r"\[10\].*\[12\]"):
        ONE[metric](a, c)
    with pytest.raises(ValueError, match=r"\[12, 10\]"):
        pairwise([c, a], [c, a], metric)
    with pytest.raises(ValueError, match=r"\[10\].*\[12\]"):
        procrustes_distance(a, c)


def test_unknown_metric_lists_valid_keys():
    X = rng_for(0).standard_normal((6, 2))
    for call in (
        lambda: pairwise([X], [X], "cca"),
        lambda: prepare(X, ["cka", "svcca"]),
        lambda: prepare(X, []),
    ):
        with pytest.raises(ValueError, match=r"\['cka', 'procrustes'\]"):
            call()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("p", [3, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_input_raises(bad, p, dtype):
    X = offset_data(rng_for(0), 20, p, dtype)
    Y = offset_data(rng_for(1), 20, 4, dtype)
    X[5, 1] = bad
    for metric in METRIC_NAMES:
        with pytest.raises(ValueError, match="NaN or infinity"):
            pairwise([Y], [X], metric)
        with pytest.raises(ValueError, match="NaN or infinity"):
            prepare(X, metric)
    with pytest.raises(ValueError, match="NaN or infinity"):
        linear_cka(X, Y, debiased=True)
    C = np.zeros((20, p), dtype)  # a non-finite value in an otherwise constant layer
    C[0, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinity"):
        prepare(C, METRIC_NAMES)


def test_too_few_examples_raise():
    rng = rng_for(0)
    for metric, f in ONE.items():
        with pytest.raises(ValueError, match="at least 2 examples"):
            f(rng.standard_normal((1, 3)), rng.standard_normal((1, 3)))
        # two examples: a single centred direction each, equal up to sign -> 1
        assert f(rng.standard_normal((2, 3)), rng.standard_normal((2, 5))) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 4 examples"):
        linear_cka(rng.standard_normal((3, 3)), rng.standard_normal((3, 3)), debiased=True)
    with pytest.raises(ValueError, match="leading example axis"):
        prepare(np.float32(1.0))


def test_float32_matmul_precision_is_restored():
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        X = offset_data(rng_for(0), 20, 5, np.float32)
        pairwise([X], [X + 1], "cka")
        pairwise([X], [X + 1], "procrustes")
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(previous)


# ---------------------------------------------------------------------------------------- spill


@pytest.mark.parametrize("debiased", [False, True])
def test_spilled_prepared_gives_identical_scores(tmp_path, debiased):
    rng = rng_for(2)
    X, Y, W = layers(rng, 30, [8, 50, 20], dtype=np.float32)
    C = np.zeros((30, 4), np.float32)
    live = [prepare(A, METRIC_NAMES, debiased=debiased) for A in (X, Y, C)]
    spilled = [P.spill(tmp_path / "spill") for P in live]
    files = sorted((tmp_path / "spill").glob("*.npy"))
    assert len(files) == 4  # gram + factor of X and Y; the constant layer has neither
    for P, S in zip(live, spilled):
        assert S is not P and S.constant == P.constant and S.n_examples == P.n_examples
        for name in ("gram", "factor"):
            a, b = getattr(P, name), getattr(S, name)
            assert (a is None) == (b is None)
            if a is not None:
                assert a.dtype == b.dtype and torch.equal(a, b)
    before = [f.read_bytes() for f in files]
    for metric in METRIC_NAMES:  # (a debiased Prepared still carries its Procrustes factor)
        kw = {"debiased": debiased} if metric == "cka" else {}
        expected = pairwise([*live, W], [*live, W], metric, **kw)
        np.testing.assert_array_equal(pairwise([*spilled, W], [*spilled, W], metric, **kw), expected)
        fresh = prepare(X, METRIC_NAMES, debiased=debiased)  # equal to live[0], another object
        np.testing.assert_array_equal(
            pairwise(spilled, [live[0], W], metric, **kw), pairwise(live, [fresh, W], metric, **kw)
        )
    assert [f.read_bytes() for f in files] == before  # the maps are never written back


# ------------------------------------------------------------------------------------ zero_small


def test_zero_small_in_place_and_flattened():
    X = np.arange(1, 25, dtype=np.float32).reshape(3, 2, 2, 2)
    X[0, 0, 0, 1] = 5e-8
    X[1, 1, 0, 0] = -9e-8
    X[2, 1, 1, 1] = 2e-7
    X[2, 0, 0, 0] = -2e-7
    expected = X.reshape(3, 8).copy()
    expected[0, 1] = 0.0
    expected[1, 4] = 0.0
    out = zero_small(X)
    assert out.shape == (3, 8) and out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    assert np.shares_memory(out, X)  # in place: no twin of a large layer
    np.testing.assert_array_equal(X.reshape(3, 8), expected)
    assert out[2, 7] == np.float32(2e-7) and out[2, 0] == np.float32(-2e-7)


def test_zero_small_copies_read_only_arrays():
    X = np.array([[1e-8, 2.0], [-3e-8, 1e-7 * 0.99], [5.0, -6.0], [1e-7, -1e-7]])
    X.flags.writeable = False
    original = X.copy()
    out = zero_small(X)
    # strictly below 1e-7 is zeroed; exactly 1e-7 is kept
    np.testing.assert_array_equal(out, [[0, 2.0], [0, 0], [5.0, -6.0], [1e-7, -1e-7]])
    np.testing.assert_array_equal(X, original)
    assert not np.shares_memory(out, X) and out.flags.writeable
    assert zero_small(X, threshold=3.0).tolist() == [[0, 0], [0, 0], [5.0, -6.0], [0, 0]]


def test_zero_small_in_row_chunks(monkeypatch):
    # Rows are processed a few at a time to bound the |x| temporary: every chunk must be done.
    monkeypatch.setattr(engine, "_CHUNK_BYTES", 3 * 5 * 8)  # 3 rows of 5 float64 per chunk
    rng = rng_for(0)
    X = rng.uniform(-2e-7, 2e-7, size=(17, 5))
    expected = np.where(np.abs(X) < 1e-7, 0.0, X)
    np.testing.assert_array_equal(zero_small(X), expected)


# -------------------------------------------------------------------------------------- registry


def test_metrics_registry_maps_names_to_intended_functions():
    assert set(METRICS) == {"cka", "procrustes"} == set(METRIC_NAMES)
    assert METRICS["cka"] is linear_cka and METRICS["procrustes"] is procrustes_similarity


# ------------------------------------------------------------------------------------------ CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("n,widths", [(300, [50, 700, 5]), (1100, [2000, 256, 33])])
def test_cuda_matches_cpu(n, widths):
    rng = rng_for(n)
    reps = structured(rng, n, widths)
    reps[2] += 1000  # large offset
    for metric, debiased in [("cka", False), ("cka", True), ("procrustes", False)]:
        cpu = pairwise(reps, reps, metric, debiased=debiased)
        gpu = pairwise(reps, reps, metric, debiased=debiased, device="cuda")
        np.testing.assert_allclose(gpu, cpu, atol=F32_TOL, rtol=0)
        prepared = [prepare(A, metric, device="cuda", debiased=debiased) for A in reps]
        assert prepared[0].gram is None or prepared[0].gram.is_cuda
        np.testing.assert_allclose(pairwise(prepared, prepared, metric, debiased=debiased, device="cuda"), cpu, atol=F32_TOL, rtol=0)
    X, Y = reps[0], reps[1]
    assert linear_cka(X, Y, device="cuda") == pytest.approx(reference.cka_reference(X, Y), abs=F32_TOL)
    assert procrustes_similarity(X, Y, device="cuda") == pytest.approx(
        reference.procrustes_example_space_reference(X, Y) if widths[0] > n else reference.procrustes_reference(X, Y),
        abs=F32_TOL,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_pair_path_matches_numpy_path_on_cpu(monkeypatch, seed):
    """On CPU Procrustes pairs go through numpy; the torch path (the one CUDA uses) gives the
    same numbers, so CI exercises the GPU code path's arithmetic without a GPU."""
    from vaetransfer.similarity import engine

    rng = np.random.default_rng(seed)
    reps = [rng.standard_normal((120, p)).astype(np.float32) for p in (7, 60, 300, 1000)]
    numpy_path = pairwise(reps, reps, "procrustes")
    monkeypatch.setattr(engine, "TORCH_PAIRS_ON_CPU", True)
    torch_path = pairwise(reps, reps, "procrustes")
    np.testing.assert_allclose(torch_path, numpy_path, atol=1e-12, rtol=0)
