"""Loss primitives against closed forms, in float64 (spec reference.md §2, aesthetics.md §8.2-8.3)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vaetransfer.models import VAEOutput
from vaetransfer.objectives import (
    ANNEALED_GAMMA,
    BETA_TC_VARIANTS,
    COMMON_TERMS,
    OBJECTIVES,
    LossTerms,
    Objective,
    annealed_capacity,
    annealed_vae,
    beta_tc_vae,
    beta_vae,
    bernoulli_reconstruction,
    compute_loss,
    covariance_z,
    dip_regulariser,
    dip_vae_ii,
    gaussian_kl,
    get_objective,
    logged_terms,
    objective_terms,
    total_correlation,
    vae,
)

REPO = Path(__file__).resolve().parents[1]


def numpy_bernoulli_nll(logits: np.ndarray, x: np.ndarray) -> float:
    """Direct -[x log σ(l) + (1-x) log(1-σ(l))], summed per example, mean over the batch."""
    p = 1.0 / (1.0 + np.exp(-logits))
    nll = -(x * np.log(p) + (1 - x) * np.log(1 - p))
    return nll.reshape(len(x), -1).sum(axis=1).mean()


def terms(rec: float, kl: float) -> LossTerms:
    z = torch.zeros(2, 10, dtype=torch.float64)
    return LossTerms(torch.tensor(rec), torch.tensor(kl), z, z, z, step=0)


def test_bernoulli_reconstruction_matches_numpy_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(5, 2, 8, 8))
    x = rng.uniform(size=(5, 2, 8, 8))  # non-binary targets as in Cars3D/CelebA
    x[0] = (x[0] > 0.5).astype(float)
    got = bernoulli_reconstruction(torch.from_numpy(logits), torch.from_numpy(x))
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(numpy_bernoulli_nll(logits, x), rel=1e-12)


def test_bernoulli_reconstruction_is_summed_not_averaged_over_pixels():
    logits = torch.zeros(3, 1, 64, 64, dtype=torch.float64)
    x = torch.ones_like(logits)
    assert bernoulli_reconstruction(logits, x).item() == pytest.approx(4096 * math.log(2))


def test_bernoulli_reconstruction_stable_for_large_logits():
    logits = torch.tensor([[1e4, -1e4, 80.0, -80.0]], dtype=torch.float64)
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    got = bernoulli_reconstruction(logits, x)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(2e4, rel=1e-12)  # the two confident mistakes cost |l| each


def test_gaussian_kl_closed_forms():
    zero = torch.zeros(4, 10, dtype=torch.float64)
    assert gaussian_kl(zero, zero).item() == 0.0
    assert gaussian_kl(torch.ones_like(zero), zero).item() == pytest.approx(5.0)
    # batch mean, not sum: two examples with KL 5 and 0 average to 2.5
    mean = torch.stack([torch.ones(10), torch.zeros(10)]).double()
    assert gaussian_kl(mean, torch.zeros_like(mean)).item() == pytest.approx(2.5)


def test_gaussian_kl_matches_analytic_and_monte_carlo():
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(3, 10))
    log_var = rng.normal(scale=0.5, size=(3, 10))
    var = np.exp(log_var)
    analytic = (np.log(1 / np.sqrt(var)) + (var + mu**2) / 2 - 0.5).sum(axis=1).mean()
    got = gaussian_kl(torch.from_numpy(mu), torch.from_numpy(log_var)).item()
    assert got == pytest.approx(analytic, rel=1e-12)
    # Monte Carlo: E_q[log q(z) - log p(z)] with z ~ q, per example, then batch mean
    z = mu + np.sqrt(var) * rng.standard_normal(size=(200_000, 3, 10))
    log_q = -0.5 * (((z - mu) ** 2) / var + log_var + np.log(2 * np.pi))
    log_p = -0.5 * (z**2 + np.log(2 * np.pi))
    monte_carlo = (log_q - log_p).sum(axis=2).mean()
    assert got == pytest.approx(monte_carlo, rel=0.01)


def test_beta_vae_beta_one_is_elbo_and_beta_scales_kl_only():
    t = terms(rec=100.0, kl=7.0)
    assert beta_vae(t, 1.0).item() == pytest.approx(107.0)
    assert beta_vae(t, 4.0).item() == pytest.approx(128.0)
    assert beta_vae(terms(rec=100.0, kl=0.0), 8.0).item() == pytest.approx(100.0)


INTENDED = {  # key -> (function, hyper-parameter name, extra logged terms)
    "vae": (vae, "beta", ()),
    "beta_vae": (beta_vae, "beta", ()),
    "beta_tc_vae": (beta_tc_vae, "beta", ("tc",)),
    "annealed_vae": (annealed_vae, "c_max", ("capacity",)),
    "dip_vae_ii": (dip_vae_ii, "lambda_od", ("dip_regulariser",)),
}


def test_registry_maps_names_to_intended_functions():
    assert set(OBJECTIVES) == set(INTENDED)
    for name, (fn, hparam, extras) in INTENDED.items():
        assert OBJECTIVES[name].fn is fn, name
        assert OBJECTIVES[name].hparam == hparam, name
        assert get_objective(name) is OBJECTIVES[name]
        assert logged_terms(name) == COMMON_TERMS + extras
    assert get_objective("beta_tc_vae").options == {"variant": BETA_TC_VARIANTS}
    assert BETA_TC_VARIANTS[0] == "total_correlation"  # the real objective is the default
    assert isinstance(OBJECTIVES["beta_vae"], Objective)
    with pytest.raises(Exception):
        OBJECTIVES["beta_vae"].hparam = "gamma"  # frozen


def test_unknown_objective_lists_valid_keys():
    with pytest.raises(KeyError, match="beta_vae") as info:
        get_objective("beta_tcvae")
    assert "beta_tcvae" in str(info.value)


def test_compute_loss_terms_and_gradient():
    rng = np.random.default_rng(2)
    mean = torch.tensor(rng.normal(size=(4, 10)), requires_grad=True)
    log_var = torch.tensor(rng.normal(size=(4, 10)) * 0.1)
    logits = torch.tensor(rng.normal(size=(4, 1, 64, 64)), requires_grad=True)
    x = torch.tensor(rng.uniform(size=(4, 1, 64, 64)))
    output = VAEOutput(mean, log_var, mean.detach(), logits)
    loss, named = compute_loss("beta_vae", 2.0, output, x, step=0)
    rec = numpy_bernoulli_nll(logits.detach().numpy(), x.numpy())
    kl = gaussian_kl(mean, log_var).item()
    assert set(named) == {"loss", "reconstruction", "kl", "elbo"}
    assert all(isinstance(v, float) for v in named.values())
    assert named["reconstruction"] == pytest.approx(rec, rel=1e-12)
    assert named["loss"] == pytest.approx(rec + 2.0 * kl, rel=1e-12)
    assert named["elbo"] == pytest.approx(-(rec + kl), rel=1e-12)
    loss.backward()
    # d(β·KL)/dμ = β·μ / N for the batch-mean KL
    assert torch.allclose(mean.grad, 2.0 * mean.detach() / 4)


# ----------------------------------------------------------------------------- shared helpers


def random_terms(n: int = 6, d: int = 3, seed: int = 0, step: int = 0, requires_grad=False) -> LossTerms:
    """Float64 LossTerms with the KL consistent with (mean, log_var) and z sampled from them."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(n, d, generator=g, dtype=torch.float64).requires_grad_(requires_grad)
    log_var = (0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_(requires_grad)
    z = mean + (0.5 * log_var).exp() * torch.randn(n, d, generator=g, dtype=torch.float64)
    rec = torch.tensor(123.0, dtype=torch.float64)
    return LossTerms(rec, gaussian_kl(mean, log_var), mean, log_var, z, step)


def reference_total_correlation(z, mean, log_var) -> float:
    """The spec §2 formula with scalar loops and math.log/exp, independent of the torch code."""
    n, d = len(z), len(z[0])

    def log_q(j, i, l):  # log N(z_jl; mu_il, exp(log_var_il))
        var = math.exp(log_var[i][l])
        return -0.5 * ((z[j][l] - mean[i][l]) ** 2 / var + log_var[i][l] + math.log(2 * math.pi))

    def logsumexp(values):
        top = max(values)
        return top + math.log(sum(math.exp(v - top) for v in values))

    total = 0.0
    for j in range(n):
        log_qz = logsumexp([sum(log_q(j, i, l) for l in range(d)) for i in range(n)])
        log_qz_product = sum(logsumexp([log_q(j, i, l) for i in range(n)]) for l in range(d))
        total += log_qz - log_qz_product
    return total / n


# ----------------------------------------------------------------------------- vae


def test_vae_is_rec_plus_kl_and_rejects_other_beta():
    t = terms(rec=100.0, kl=7.0)
    assert vae(t).item() == 107.0 and vae(t, 1.0).item() == 107.0
    assert torch.equal(vae(t, 1), beta_vae(t, 1.0))
    with pytest.raises(ValueError, match="beta_vae"):
        vae(t, 2.0)
    OBJECTIVES["vae"].check_hparam(1.0)
    with pytest.raises(ValueError, match=r"beta=4\.0.*valid: \[1\.0\]"):
        OBJECTIVES["vae"].check_hparam(4.0)
    OBJECTIVES["beta_vae"].check_hparam(4.0)  # any value


def test_kl_of_standard_normal_posterior_is_zero():
    zero = torch.zeros(5, 10, dtype=torch.float64)
    assert gaussian_kl(zero, zero).item() == 0.0
    t = LossTerms(torch.tensor(3.0, dtype=torch.float64), gaussian_kl(zero, zero), zero, zero, zero, 0)
    for name in ("vae", "beta_vae", "beta_tc_vae"):
        # rec only: KL is 0; for beta-TC the TC term is weighted by beta - 1 = 0
        assert OBJECTIVES[name].fn(t, 1.0).item() == 3.0


# ----------------------------------------------------------------------------- beta-TC-VAE


def test_total_correlation_matches_float64_loop_reference():
    t = random_terms(n=4, d=3, seed=3)
    want = reference_total_correlation(t.z.tolist(), t.mean.tolist(), t.log_var.tolist())
    got = total_correlation(t.z, t.mean, t.log_var)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(want, rel=1e-12, abs=1e-12)
    # float32, as in training, agrees to float32 precision
    got32 = total_correlation(t.z.float(), t.mean.float(), t.log_var.float())
    assert got32.item() == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_total_correlation_of_identical_posteriors_is_the_dropped_constant():
    # every q(z|x_i) the same: log q(z) and log prod q(z_l) differ only by the constants dlib drops,
    # so TC = -(d - 1) * log N exactly (dlib vae_test: -82.893 = -(10 - 1) * ln(10000))
    n, d = 50, 10
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    zero = torch.zeros(n, d, dtype=torch.float64)
    assert total_correlation(z, zero, zero).item() == pytest.approx(-(d - 1) * math.log(n), rel=1e-12)


def test_total_correlation_independent_near_zero_correlated_gaussian_closed_form():
    """Large batch: with the constants added back, TC of independent latents is ~0 while perfectly
    correlated means give the Gaussian TC 0.5·(Σ log Var z_l − log det Cov z)."""
    n, d, sigma = 1000, 4, 0.5
    g = torch.Generator().manual_seed(0)
    log_var = torch.full((n, d), 2 * math.log(sigma), dtype=torch.float64)
    independent = torch.randn(n, d, generator=g, dtype=torch.float64)
    correlated = torch.randn(n, 1, generator=g, dtype=torch.float64).expand(n, d)
    tc = {}
    for name, mean in (("independent", independent), ("correlated", correlated)):
        z = mean + sigma * torch.randn(n, d, generator=g, dtype=torch.float64)
        tc[name] = total_correlation(z, mean, log_var).item() + (d - 1) * math.log(n)
    cov = torch.ones(d, d, dtype=torch.float64) + sigma**2 * torch.eye(d, dtype=torch.float64)
    gaussian_tc = 0.5 * (torch.diagonal(cov).log().sum() - torch.logdet(cov)).item()  # 1.80
    assert abs(tc["independent"]) < 0.1
    assert tc["correlated"] == pytest.approx(gaussian_tc, rel=0.1)
    assert tc["correlated"] > 10 * abs(tc["independent"])


def test_beta_tc_vae_formula_and_beta_one_is_vanilla():
    t = random_terms(seed=4)
    tc = total_correlation(t.z, t.mean, t.log_var)
    assert beta_tc_vae(t, 4.0).item() == pytest.approx((t.reconstruction + t.kl + 3.0 * tc).item(), rel=1e-14)
    assert torch.equal(beta_tc_vae(t, 1.0), vae(t))
    assert torch.equal(beta_tc_vae(t, 1.0, variant="total_correlation"), beta_vae(t, 1.0))


def test_beta_tc_vae_authors_variant_is_exactly_beta_vae():
    t = random_terms(seed=5)
    for beta in (1.0, 2.0, 6.0):
        assert torch.equal(beta_tc_vae(t, beta, variant="authors_beta_vae"), beta_vae(t, beta))
    assert beta_tc_vae(t, 6.0).item() != beta_vae(t, 6.0).item()
    with pytest.raises(ValueError, match="unknown variant 'tc'"):
        beta_tc_vae(t, 2.0, variant="tc")


def test_objective_options_resolve_with_defaults_and_reject_unknowns():
    objective = get_objective("beta_tc_vae")
    assert objective.resolve_options() == {"variant": "total_correlation"}
    assert objective.resolve_options({"variant": "authors_beta_vae"}) == {"variant": "authors_beta_vae"}
    with pytest.raises(ValueError, match="valid: \\['total_correlation', 'authors_beta_vae'\\]"):
        objective.resolve_options({"variant": "beta_vae"})
    with pytest.raises(ValueError, match="unknown option"):
        objective.resolve_options({"estimator": "mws"})
    assert get_objective("beta_vae").resolve_options({}) == {}
    with pytest.raises(ValueError, match="unknown option"):
        get_objective("beta_vae").resolve_options({"variant": "total_correlation"})


# ----------------------------------------------------------------------------- annealed VAE


def test_annealed_capacity_schedule():
    assert annealed_capacity(0, 25.0) == 0.0
    assert annealed_capacity(50_000, 25.0) == 12.5
    assert annealed_capacity(100_000, 25.0) == 25.0
    assert annealed_capacity(100_001, 25.0) == 25.0
    assert annealed_capacity(300_000, 25.0) == 25.0
    assert annealed_capacity(1, 10.0) == pytest.approx(1e-4)


@pytest.mark.parametrize("step", [0, 1, 50_000, 100_000, 250_000])
def test_annealed_vae_is_rec_plus_gamma_abs_kl_minus_capacity(step):
    assert ANNEALED_GAMMA == 1000.0
    t = random_terms(seed=6, step=step)
    c = min(5.0, 5.0 * step / 100_000)
    want = t.reconstruction + 1000.0 * torch.abs(t.kl - c)
    assert annealed_vae(t, 5.0).item() == want.item()


def test_annealed_vae_penalises_kl_below_and_above_capacity():
    assert annealed_vae(terms(rec=10.0, kl=2.0), 75.0).item() == pytest.approx(10.0 + 2000.0)  # C = 0
    t = LossTerms(torch.tensor(10.0), torch.tensor(2.0), *(torch.zeros(2, 3),) * 3, step=100_000)
    assert annealed_vae(t, 5.0).item() == pytest.approx(10.0 + 3000.0)  # C = 5 > KL


# ----------------------------------------------------------------------------- DIP-VAE-II


def whitened_means(n: int, d: int, variance: float, seed: int = 0) -> torch.Tensor:
    """(n, d) means whose biased batch covariance is exactly variance·I."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, d, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(raw - raw.mean(dim=0))  # orthonormal, centred columns
    return 3.0 + math.sqrt(n * variance) * q  # a shared offset does not change the covariance


def test_dip_regulariser_of_whitened_unit_variance_is_zero():
    n, d = 64, 10
    # Cov[mu] = I and (numerically) no encoder variance
    mean = whitened_means(n, d, 1.0)
    log_var = torch.full((n, d), -200.0, dtype=torch.float64)
    cov = covariance_z(mean, log_var)
    assert torch.allclose(cov, torch.eye(d, dtype=torch.float64), atol=1e-12)
    assert dip_regulariser(cov, 10.0, 10.0).item() == pytest.approx(0.0, abs=1e-20)
    # Cov[mu] = 0.75·I plus encoder variance 0.25: Cov[z] = I again
    mean = whitened_means(n, d, 0.75, seed=1)
    log_var = torch.full((n, d), math.log(0.25), dtype=torch.float64)
    t = LossTerms(torch.tensor(5.0, dtype=torch.float64), gaussian_kl(mean, log_var), mean, log_var, mean, 0)
    assert dip_vae_ii(t, 20.0).item() == pytest.approx((t.reconstruction + t.kl).item(), rel=1e-12)


def test_dip_regulariser_hand_computed_example():
    # mu = [[1, 0], [-1, 2]]: E[mu] = [0, 1], E[mu mu^T] = [[1, -1], [-1, 2]] -> Cov[mu] = [[1, -1], [-1, 1]]
    # sigma^2 = [[1, 3], [3, 1]]: mean diag = diag(2, 2) -> Cov[z] = [[3, -1], [-1, 3]]
    # off-diagonal: (-1)^2 + (-1)^2 = 2; diagonal: (3-1)^2 + (3-1)^2 = 8
    mean = torch.tensor([[1.0, 0.0], [-1.0, 2.0]], dtype=torch.float64)
    log_var = torch.tensor([[1.0, 3.0], [3.0, 1.0]], dtype=torch.float64).log()
    cov = covariance_z(mean, log_var)
    assert torch.allclose(cov, torch.tensor([[3.0, -1.0], [-1.0, 3.0]], dtype=torch.float64), atol=1e-14)
    assert dip_regulariser(cov, 1.0, 1.0).item() == pytest.approx(10.0)
    assert dip_regulariser(cov, 5.0, 0.5).item() == pytest.approx(5.0 * 2 + 0.5 * 8)
    t = LossTerms(torch.tensor(7.0, dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64),
                  mean, log_var, mean, 0)
    assert dip_vae_ii(t, 5.0).item() == pytest.approx(7.0 + 1.5 + 5.0 * 10.0)  # lambda_d = lambda_od


def test_covariance_z_matches_numpy():
    t = random_terms(n=9, d=4, seed=7)
    mu, var = t.mean.numpy(), t.log_var.exp().numpy()
    want = np.cov(mu, rowvar=False, bias=True) + np.diag(var.mean(axis=0))
    np.testing.assert_allclose(covariance_z(t.mean, t.log_var).numpy(), want, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- all objectives

HPARAM = {"vae": 1.0, "beta_vae": 4.0, "beta_tc_vae": 6.0, "annealed_vae": 25.0, "dip_vae_ii": 10.0}


def vae_output(seed: int = 8, n: int = 5, d: int = 10) -> VAEOutput:
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(n, d, generator=g, requires_grad=True)
    log_var = (0.3 * torch.randn(n, d, generator=g)).requires_grad_()
    z = mean + (0.5 * log_var).exp() * torch.randn(n, d, generator=g)  # gradients reach mean, log_var
    logits = torch.randn(n, 1, 64, 64, generator=g, requires_grad=True)
    return VAEOutput(mean, log_var, z, logits)


@pytest.mark.parametrize("name", sorted(INTENDED))
def test_every_objective_gives_finite_gradients_and_logs_its_terms(name):
    output = vae_output()
    x = torch.rand(5, 1, 64, 64, generator=torch.Generator().manual_seed(9))
    loss, named = compute_loss(name, HPARAM[name], output, x, step=30_000)
    assert tuple(named) == logged_terms(name)
    assert all(isinstance(v, float) and math.isfinite(v) for v in named.values())
    assert named["loss"] == loss.item()
    loss.backward()
    for tensor in (output.mean, output.log_var, output.logits):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name


def test_logged_extras_are_the_unweighted_added_terms():
    output = vae_output()
    x = torch.rand(5, 1, 64, 64, generator=torch.Generator().manual_seed(9))
    _, tc_terms = objective_terms("beta_tc_vae", 6.0, output, x, step=0)
    assert all(v.ndim == 0 and not v.requires_grad for v in tc_terms.values())
    want_tc = total_correlation(output.z, output.mean, output.log_var)
    assert tc_terms["tc"].item() == want_tc.item()
    base = tc_terms["reconstruction"] + tc_terms["kl"]
    assert tc_terms["loss"].item() == pytest.approx((base + 5.0 * tc_terms["tc"]).item(), rel=1e-6)
    # the authors' variant trains beta-VAE but still logs the TC it ignores
    _, authors = objective_terms("beta_tc_vae", 6.0, output, x, 0, {"variant": "authors_beta_vae"})
    assert authors["tc"].item() == want_tc.item()
    assert authors["loss"].item() == (authors["reconstruction"] + 6.0 * authors["kl"]).item()

    _, annealed = objective_terms("annealed_vae", 25.0, output, x, step=50_000)
    assert annealed["capacity"].item() == 12.5 and annealed["capacity"].dtype == torch.float32
    _, dip = objective_terms("dip_vae_ii", 10.0, output, x, step=0)
    added = (dip["loss"] - dip["reconstruction"] - dip["kl"]) / 10.0
    assert dip["dip_regulariser"].item() == pytest.approx(added.item(), rel=1e-4)


# ----------------------------------------------------------------------------- config schema


def validated_training(**training_overrides) -> dict:
    """config/quick.yaml with training keys replaced, validated as the Snakefile does."""
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())
    config["training"].update(training_overrides)
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return config["training"]


def test_schema_objective_options_default_accept_and_reject():
    from snakemake.exceptions import WorkflowError

    # the schema default is the code default
    assert validated_training()["objective_options"] == {"beta_tc_vae": {"variant": BETA_TC_VARIANTS[0]}}
    chosen = validated_training(objective_options={"beta_tc_vae": {"variant": "authors_beta_vae"}})
    assert chosen["objective_options"]["beta_tc_vae"] == {"variant": "authors_beta_vae"}
    assert get_objective("beta_tc_vae").resolve_options(chosen["objective_options"]["beta_tc_vae"])
    for bad, why in (({"beta_tc_vae": {"variant": "beta_vae"}}, "is not one of"),  # not a variant
                     ({"beta_tc_vae": {"estimator": "mws"}}, "'estimator' was unexpected"),
                     ({"betatc_vae": {}}, "'betatc_vae' was unexpected")):  # no such objective
        with pytest.raises(WorkflowError, match="Error validating config") as info:
            validated_training(objective_options=bad)
        assert why in str(info.value)


def test_schema_options_mirror_the_registry():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    options = schema["properties"]["training"]["properties"]["objective_options"]["properties"]
    with_options = {name for name, objective in OBJECTIVES.items() if objective.options}
    assert set(options) == with_options
    for name in with_options:
        for option, allowed in OBJECTIVES[name].options.items():
            spec = options[name]["properties"][option]
            assert tuple(spec["enum"]) == allowed and spec["default"] == allowed[0]
