"""Float64 references and the naive per-pair recipes, for tests and benchmarks only.

These follow the textbook formulas literally (explicit centring matrices, feature-space products,
an SVD of X^T Y), independently of the engine's example-space shortcuts. The naive recipes are the
baselines of ``benchmarks/similarity.py``: what a per-pair implementation like the authors' does.
"""

from __future__ import annotations

import numpy as np


def _centred64(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    return X - X.mean(axis=0)


def cka_reference(X, Y, debiased: bool = False) -> float:
    """Linear CKA in float64 from the raw (uncentred) Grams, as in Kornblith et al.'s demo.

    Biased: ``tr(KHLH) / sqrt(tr(KHKH) tr(LHLH))``; debiased: the unbiased HSIC centring.
    """
    X = np.asarray(X, np.float64).reshape(len(X), -1)
    Y = np.asarray(Y, np.float64).reshape(len(Y), -1)
    K, L = center_gram(X @ X.T, debiased), center_gram(Y @ Y.T, debiased)
    return float(np.vdot(K, L) / (np.linalg.norm(K) * np.linalg.norm(L)))


def center_gram(K, unbiased: bool = False) -> np.ndarray:
    """Kornblith et al.'s ``center_gram``: H K H, or the unbiased (Song et al. 2012) centring."""
    K = np.array(K, dtype=np.float64)
    n = K.shape[0]
    if unbiased:
        np.fill_diagonal(K, 0)
        means = K.sum(axis=0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        K -= means[:, None]
        K -= means[None, :]
        np.fill_diagonal(K, 0)
        return K
    H = np.eye(n) - np.ones((n, n)) / n
    return H @ K @ H


def feature_cka_reference(X, Y) -> float:
    """``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` in float64 (p x q products: small p, q)."""
    Xc, Yc = _centred64(X), _centred64(Y)
    return float(
        np.linalg.norm(Xc.T @ Yc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))
    )


def procrustes_reference(X, Y) -> float:
    """Appendix C Eq. 7 literally, float64: ``1 - (||X||^2 + ||Y||^2 - 2||X^T Y||_*)/2``, X, Y
    centred and scaled to unit Frobenius norm, nuclear norm from the SVD of the p x q product."""
    Xn, Yn = _centred64(X), _centred64(Y)
    Xn /= np.linalg.norm(Xn)
    Yn /= np.linalg.norm(Yn)
    nuclear = np.linalg.svd(Xn.T @ Yn, compute_uv=False).sum()
    return float(1 - (np.sum(Xn**2) + np.sum(Yn**2) - 2 * nuclear) / 2)


def procrustes_example_space_reference(X, Y) -> float:
    """Float64 Procrustes for wide X, Y (p, q >> n): ||X^T Y||_* = ||(U_x S_x)^T (U_y S_y)||_*
    with thin float64 SVDs of the normalised inputs (the SVD of a p x q product would not fit)."""
    factors = []
    for Z in (X, Y):
        Zc = _centred64(Z)
        Zc /= np.linalg.norm(Zc)
        U, S, _ = np.linalg.svd(Zc, full_matrices=False)
        factors.append(U * S)
    return float(np.linalg.svd(factors[0].T @ factors[1], compute_uv=False).sum())


# ------------------------------------------------------------------- naive per-pair baselines


def naive_cka(X, Y) -> float:
    """Per-pair recipe of the authors' code: both centred Grams rebuilt, one flat dot product,
    in the input dtype (float32 activations stay float32)."""
    Xc = X - X.mean(axis=0)
    Yc = Y - Y.mean(axis=0)
    K, L = Xc @ Xc.T, Yc @ Yc.T
    return float(np.dot(K.ravel(), L.ravel()) / (np.linalg.norm(K) * np.linalg.norm(L)))


def naive_procrustes(X, Y) -> float:
    """Per-pair recipe of the authors' code: normalise, SVD of the p x q product X^T Y."""
    Xn = X - X.mean(axis=0)
    Yn = Y - Y.mean(axis=0)
    Xn /= np.linalg.norm(Xn)
    Yn /= np.linalg.norm(Yn)
    return float(np.linalg.svd(Xn.T @ Yn, compute_uv=False).sum())
