"""Invariances, closed forms and independent references for vaetransfer.similarity.

Each metric test is parametrised over seeds (netrep / Kornblith-demo style); the references are
written here from the textbook formulas, independently of the module's example-space shortcuts.
"""

import itertools

import numpy as np
import pytest
import scipy.linalg

from vaetransfer import similarity as sim
from vaetransfer.similarity import (
    METRICS,
    center_gram,
    check_equal_n_samples,
    feature_space_linear_cka,
    gram_linear,
    linear_cka,
    pair_score,
    prepare,
    prepare_activations,
    procrustes_distance,
    procrustes_similarity,
    score_layer_pairs,
)

SEEDS = [0, 1, 2]
# (n, p): fewer features than examples (Procrustes uses Xc as its factor) and more (Gram eigenfactor).
SHAPES = [(60, 12), (25, 70)]


def rng_for(seed):
    return np.random.default_rng(seed)


def random_orthogonal(rng, p):
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))


def offset_data(rng, n, p):
    """Random data with non-zero column means, so that centring matters."""
    return rng.standard_normal((n, p)) + rng.uniform(-5, 5, size=p)


# ------------------------------------------------------------------------------------ references


def reference_cka(X, Y):
    """tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)) with the explicit centring matrix H = I - 11^T/n."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T
    KH, LH = K @ H, L @ H
    return np.trace(KH @ LH) / np.sqrt(np.trace(KH @ KH) * np.trace(LH @ LH))


def normalise(X):
    Xc = np.asarray(X, np.float64) - np.asarray(X, np.float64).mean(axis=0)
    return Xc / np.linalg.norm(Xc)


def reference_procrustes(X, Y):
    """Appendix C Eq. 7 literally: 1 - (||X||^2 + ||Y||^2 - 2||X^T Y||_*)/2 with a p x q SVD."""
    Xn, Yn = normalise(X), normalise(Y)
    nuclear = scipy.linalg.svdvals(Xn.T @ Yn).sum()
    return 1 - (np.sum(Xn**2) + np.sum(Yn**2) - 2 * nuclear) / 2


# ----------------------------------------------------------------------------------------- CKA


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,p", SHAPES)
def test_cka_of_itself_is_one_and_symmetric(seed, n, p):
    rng = rng_for(seed)
    X, Y = offset_data(rng, n, p), offset_data(rng, n, p + 3)
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(X, Y) == pytest.approx(linear_cka(Y, X), abs=1e-14)
    assert linear_cka(X, Y) < 0.99


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,p", SHAPES)
def test_cka_invariant_to_orthogonal_scale_and_translation(seed, n, p):
    rng = rng_for(seed)
    X, Y = offset_data(rng, n, p), offset_data(rng, n, 9)
    base = linear_cka(X, Y)
    Q = random_orthogonal(rng, p)
    assert linear_cka(X @ Q, Y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(X, X @ Q) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(3.7 * X, 0.01 * Y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(X + rng.normal(size=p) * 100, Y) == pytest.approx(base, abs=1e-10)


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


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,p,q", [(50, 7, 13), (20, 40, 5), (30, 45, 60)])
def test_cka_gram_form_matches_feature_form_and_reference(seed, n, p, q):
    rng = rng_for(seed)
    X, Y = offset_data(rng, n, p), offset_data(rng, n, q)
    Y[:, 0] += X[:, 0]  # some shared signal so the value is not trivially small
    value = linear_cka(X, Y)
    assert value == pytest.approx(feature_space_linear_cka(X, Y), abs=1e-8)
    assert value == pytest.approx(reference_cka(X, Y), abs=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_cka_of_independent_gaussians_is_near_zero(seed):
    # E[CKA] ~ sqrt(pq)/n for independent X, Y with n >> p, q: about 0.003 here.
    rng = rng_for(seed)
    X, Y = rng.standard_normal((2000, 5)), rng.standard_normal((2000, 5))
    assert linear_cka(X, Y) < 0.02
    assert linear_cka(X, X + 0.5 * Y) > 0.5  # the bound is not vacuous


def test_gram_and_center_gram_match_explicit_formulas():
    rng = rng_for(0)
    X = offset_data(rng, 15, 4)
    H = np.eye(15) - np.ones((15, 15)) / 15
    np.testing.assert_allclose(gram_linear(X), X @ X.T, atol=1e-12)
    np.testing.assert_allclose(center_gram(gram_linear(X)), H @ X @ X.T @ H, atol=1e-10)
    with pytest.raises(ValueError, match="symmetric"):
        center_gram(rng.standard_normal((4, 4)))


# ---------------------------------------------------------------------------------- Procrustes


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,p", SHAPES)
def test_procrustes_invariances_give_one(seed, n, p):
    rng = rng_for(seed)
    X = offset_data(rng, n, p)
    Q, c, b = random_orthogonal(rng, p), rng.uniform(0.1, 10), rng.normal(size=p) * 10
    assert procrustes_similarity(X, c * X @ Q + b) == pytest.approx(1.0, abs=1e-8)
    assert procrustes_distance(X, X) < 1e-6


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,p", SHAPES)
def test_procrustes_in_unit_interval_and_symmetric(seed, n, p):
    rng = rng_for(seed)
    X, Y = offset_data(rng, n, p), offset_data(rng, n, 8)
    value = procrustes_similarity(X, Y)
    assert 0.0 <= value < 0.99
    assert value == pytest.approx(procrustes_similarity(Y, X), abs=1e-12)
    assert procrustes_distance(X, Y) == pytest.approx(np.sqrt(2 - 2 * value), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,p,q", [(40, 10, 15), (20, 50, 35), (30, 30, 60), (30, 60, 12)])
def test_procrustes_example_space_matches_direct_svd(seed, n, p, q):
    rng = rng_for(seed)
    X, Y = offset_data(rng, n, p), offset_data(rng, n, q)
    Y[:, :3] += X[:, :3]
    assert procrustes_similarity(X, Y) == pytest.approx(reference_procrustes(X, Y), abs=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_procrustes_with_dead_units_matches_direct_svd(seed):
    # Half the units of a narrow layer are dead (constant): they add exact zero singular values to
    # X^T Y, which must not contribute sqrt(rounding noise) each to the nuclear norm.
    rng = rng_for(seed)
    X, Y = offset_data(rng, 200, 120), offset_data(rng, 200, 150)
    X[:, ::2] = 0.0
    Y[:, 1::3] = 2.5
    assert procrustes_similarity(X, Y) == pytest.approx(reference_procrustes(X, Y), abs=1e-12)
    assert procrustes_similarity(X, Y) == pytest.approx(
        procrustes_similarity(X[:, 1::2], Y), abs=1e-12
    )


def test_procrustes_is_not_cka():
    # Procrustes is not invariant to anisotropic scaling either, but it differs from CKA.
    rng = rng_for(0)
    X = offset_data(rng, 50, 6)
    Y = X @ np.diag([1, 1, 1, 5, 5, 5])
    assert abs(procrustes_similarity(X, Y) - linear_cka(X, Y)) > 1e-3


# ------------------------------------------------------------------------------------ closed form


@pytest.mark.parametrize("seed", SEEDS)
def test_closed_forms_on_orthonormal_centred_columns(seed):
    # X (n, k) with centred orthonormal columns: X^T X = I_k and 1^T X = 0, so Xc = X.
    # (a) Y = first m columns of X. Then X^T Y = [I_m; 0]:
    #   CKA = ||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F) = m / (sqrt(k) sqrt(m)) = sqrt(m/k);
    #   Procrustes: X/||X||_F = X/sqrt(k), Y/sqrt(m), nuclear norm of [I_m; 0]/sqrt(km) = sqrt(m/k).
    # (b) Y = X diag(d): X^T Y = diag(d), ||Y^T Y||_F = sqrt(sum d^4), ||Y||_F = sqrt(sum d^2):
    #   CKA = sum d^2 / (sqrt(k) sqrt(sum d^4));  Procrustes = sum |d| / (sqrt(k) sqrt(sum d^2)).
    #   With k = 2, d = (1, 2): CKA = 5/sqrt(34), Procrustes = 3/sqrt(10).
    rng = rng_for(seed)
    n, k, m = 40, 4, 1
    A = rng.standard_normal((n, k))
    X, _ = np.linalg.qr(A - A.mean(axis=0))  # columns: combinations of centred columns -> centred
    assert np.allclose(X.T @ X, np.eye(k)) and np.allclose(X.mean(axis=0), 0)
    Y = X[:, :m]
    assert linear_cka(X, Y) == pytest.approx(np.sqrt(m / k), abs=1e-12)
    assert procrustes_similarity(X, Y) == pytest.approx(np.sqrt(m / k), abs=1e-12)

    X2 = X[:, :2]
    Y2 = X2 @ np.diag([1.0, 2.0])
    assert linear_cka(X2, Y2) == pytest.approx(5 / np.sqrt(34), abs=1e-12)
    assert procrustes_similarity(X2, Y2) == pytest.approx(3 / np.sqrt(10), abs=1e-12)


# ------------------------------------------------------------------------ preprocessing and guards


def test_prepare_activations_flattens_and_zeroes_tiny_values():
    X = np.arange(1, 25, dtype=np.float32).reshape(3, 2, 2, 2)
    X[0, 0, 0, 1] = 5e-8
    X[1, 1, 0, 0] = -9e-8
    X[2, 1, 1, 1] = 2e-7
    original = X.copy()
    out = prepare_activations(X)
    expected = original.reshape(3, 8).astype(np.float64)
    expected[0, 1] = 0.0
    expected[1, 4] = 0.0
    assert out.shape == (3, 8) and out.dtype == np.float64
    np.testing.assert_array_equal(out, expected)
    assert out[2, 7] == np.float64(np.float32(2e-7))
    np.testing.assert_array_equal(X, original)  # input untouched


@pytest.mark.parametrize("metric", [*METRICS.values(), feature_space_linear_cka, procrustes_distance])
def test_mismatched_sample_counts_raise_with_both_sizes(metric):
    rng = rng_for(0)
    with pytest.raises(ValueError, match=r"10 rows.*12"):
        metric(rng.standard_normal((10, 3)), rng.standard_normal((12, 3)))
    with pytest.raises(ValueError, match="at least 2 examples"):
        metric(rng.standard_normal((1, 3)), rng.standard_normal((1, 3)))


def test_check_equal_n_samples_returns_n():
    assert check_equal_n_samples(np.zeros((7, 2)), np.zeros((7, 5, 5))) == 7


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("n,p", SHAPES)
def test_constant_representation_gives_nan_without_warning(n, p):
    rng = rng_for(0)
    # 0.1 is not exactly its own float mean over n copies: the module must still see zero variance.
    constant = np.full((n, p), 0.1)
    X = offset_data(rng, n, 5)
    for metric in [*METRICS.values(), feature_space_linear_cka, procrustes_distance]:
        assert np.isnan(metric(constant, X))
        assert np.isnan(metric(X, constant))
        assert np.isnan(metric(constant, constant))
    table = score_layer_pairs({"c": constant, "x": X}, {"x": X}, ["cka", "procrustes"])
    assert table.loc[table.layer_x == "c", "score"].isna().all()
    assert table.loc[table.layer_x == "x", "score"].notna().all()


def test_prepare_keeps_only_what_the_metrics_need():
    rng = rng_for(0)
    for shape in SHAPES:
        X = offset_data(rng, *shape)
        only_procrustes = prepare(X, ["procrustes"])
        only_cka = prepare(X, "cka")
        assert only_procrustes.cka_gram is None and only_cka.procrustes_factor is None
        assert only_cka.cka_gram.shape == (shape[0], shape[0])
        assert np.linalg.norm(only_cka.cka_gram) == pytest.approx(1.0, abs=1e-12)
        A = only_procrustes.procrustes_factor
        np.testing.assert_allclose(A @ A.T, normalise(X) @ normalise(X).T, atol=1e-12)
    zero_width = prepare(np.empty((5, 0)), ["cka", "procrustes"])
    assert zero_width.constant


def test_non_finite_activations_raise():
    X = np.ones((5, 3))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        prepare(X, ["cka"])


def test_unknown_metric_lists_valid_keys():
    X = np.random.default_rng(0).standard_normal((6, 2))
    for call in (
        lambda: prepare(X, ["cca"]),
        lambda: score_layer_pairs({"a": X}, {"a": X}, ["cka", "linear_cka"]),
        lambda: pair_score(prepare(X, ["cka"]), prepare(X, ["cka"]), "svcca"),
    ):
        with pytest.raises(ValueError, match=r"\['cka', 'procrustes'\]"):
            call()
    with pytest.raises(ValueError, match="not for 'procrustes'"):
        pair_score(prepare(X, ["cka"]), prepare(X, ["cka"]), "procrustes")


def test_metrics_registry_maps_names_to_intended_functions():
    assert METRICS == {"cka": linear_cka, "procrustes": procrustes_similarity}


# ------------------------------------------------------------------------------ all-pairs scoring


def layer_dict(rng, n, widths):
    shared = rng.standard_normal((n, 4))
    return {
        name: shared @ rng.standard_normal((4, p)) + rng.standard_normal((n, p)) + rng.normal(size=p)
        for name, p in widths.items()
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_score_layer_pairs_matches_direct_metric_calls(seed):
    rng = rng_for(seed)
    n = 30
    acts_x = layer_dict(rng, n, {"a": 5, "b": 60, "c": 30, "d": 2})
    acts_y = layer_dict(rng, n, {"u": 45, "v": 3, "w": 12})
    acts_y["w"] = acts_y["w"].reshape(n, 3, 2, 2)  # conv-shaped activations are flattened
    metrics = ["procrustes", "cka"]
    table = score_layer_pairs(acts_x, acts_y, metrics)
    assert list(table.columns) == ["layer_x", "layer_y", "metric", "score", "n_examples"]
    assert len(table) == 4 * 3 * 2
    assert list(zip(table.layer_x, table.layer_y, table.metric)) == list(
        itertools.product(acts_x, acts_y, metrics)
    )
    assert (table.n_examples == n).all()
    for row in table.itertuples():
        direct = METRICS[row.metric](acts_x[row.layer_x], acts_y[row.layer_y])
        assert row.score == pytest.approx(direct, abs=1e-12)


def test_score_layer_pairs_follows_given_layer_order():
    rng = rng_for(0)
    acts = layer_dict(rng, 20, {"a": 3, "b": 4, "c": 25})
    table = score_layer_pairs(acts, dict(acts), ["cka"], layers_x=["c", "a"], layers_y=["b", "c", "a"])
    assert list(zip(table.layer_x, table.layer_y)) == list(
        itertools.product(["c", "a"], ["b", "c", "a"])
    )
    with pytest.raises(KeyError, match="'z'"):
        score_layer_pairs(acts, acts, ["cka"], layers_x=["z"])


@pytest.mark.parametrize("seed", SEEDS)
def test_self_comparison_is_symmetric_with_unit_diagonal(seed):
    rng = rng_for(seed)
    acts = layer_dict(rng, 25, {"a": 4, "b": 40, "c": 10, "d": 25})
    table = score_layer_pairs(acts, acts, ["cka", "procrustes"])
    assert len(table) == 4 * 4 * 2
    for metric in ("cka", "procrustes"):
        grid = table[table.metric == metric].pivot(index="layer_x", columns="layer_y", values="score")
        np.testing.assert_allclose(np.diag(grid.to_numpy()), 1.0, atol=1e-12)
        np.testing.assert_allclose(grid.to_numpy(), grid.to_numpy().T, atol=1e-12)
        assert (grid.to_numpy() < 1 - 1e-3).sum() == 12  # off-diagonal pairs are really computed
        for lx, ly in itertools.permutations(acts, 2):
            assert grid.loc[lx, ly] == pytest.approx(METRICS[metric](acts[lx], acts[ly]), abs=1e-12)


def test_each_layer_is_prepared_once(monkeypatch):
    calls = []
    real_prepare = sim.prepare

    def spy(X, metrics):
        calls.append(id(X))
        return real_prepare(X, metrics)

    monkeypatch.setattr(sim, "prepare", spy)
    rng = rng_for(0)
    acts_x = layer_dict(rng, 20, {"a": 3, "b": 30, "c": 8})
    acts_y = layer_dict(rng, 20, {"u": 5, "v": 22})
    score_layer_pairs(acts_x, acts_y, ["cka", "procrustes"])
    assert sorted(calls) == sorted(id(a) for a in [*acts_x.values(), *acts_y.values()])

    calls.clear()
    score_layer_pairs(acts_x, acts_x, ["cka", "procrustes"], layers_x=["a", "b"], layers_y=["b", "c"])
    assert sorted(calls) == sorted(id(acts_x[k]) for k in "abc")


def test_pair_score_equals_metric_on_raw_arrays():
    rng = rng_for(3)
    X, Y = offset_data(rng, 30, 50), offset_data(rng, 30, 7)
    a, b = prepare(X, ["cka", "procrustes"]), prepare(Y, ["procrustes", "cka"])
    for name, metric in METRICS.items():
        assert pair_score(a, b, name) == pytest.approx(metric(X, Y), abs=1e-12)
    with pytest.raises(ValueError, match="30 rows.*29"):
        pair_score(a, prepare(Y[:29], ["cka"]), "cka")


# ------------------------------------------------------------------------ float32 at realistic size


def test_float32_wide_layers_match_float64_reference():
    # Low-rank structure + noise + large column offsets (centring in float32 would lose digits).
    # X is wider than n (Gram eigenfactor path), Y narrower (centred-features path).
    rng = rng_for(0)
    n, p, q, rank = 2000, 8192, 500, 20
    latent = rng.standard_normal((n, rank))
    X = latent @ rng.standard_normal((rank, p)) + 0.5 * rng.standard_normal((n, p)) + 30.0
    Y = np.tanh(latent) @ rng.standard_normal((rank, q)) + rng.standard_normal((n, q)) - 7.0
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    Xc, Yc = X.astype(np.float64), Y.astype(np.float64)
    Xc -= Xc.mean(axis=0)
    Yc -= Yc.mean(axis=0)

    K, L = Xc @ Xc.T, Yc @ Yc.T  # CKA reference: centred Grams in float64
    cka_ref = np.vdot(K, L) / (np.linalg.norm(K) * np.linalg.norm(L))
    # Procrustes reference: Eq. 7 literally, the SVD of the p x q cross-product in float64.
    proc_ref = scipy.linalg.svdvals(Xc.T @ Yc).sum() / (np.linalg.norm(Xc) * np.linalg.norm(Yc))

    table = score_layer_pairs({"x": X}, {"y": Y}, ["cka", "procrustes"]).set_index("metric").score
    assert 0.05 < cka_ref < 0.95 and 0.05 < proc_ref < 0.95
    assert abs(table["cka"] - cka_ref) < 1e-6
    assert abs(table["procrustes"] - proc_ref) < 1e-6
