"""Loss primitives against closed forms, in float64 (spec reference.md §2, aesthetics.md §8.2-8.3)."""

import math

import numpy as np
import pytest
import torch

from vaetransfer.models import VAEOutput
from vaetransfer.objectives import (
    OBJECTIVES,
    LossTerms,
    Objective,
    beta_vae,
    bernoulli_reconstruction,
    compute_loss,
    gaussian_kl,
    get_objective,
)


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


def test_registry_maps_names_to_intended_functions():
    assert set(OBJECTIVES) == {"beta_vae"}
    assert OBJECTIVES["beta_vae"].fn is beta_vae
    assert OBJECTIVES["beta_vae"].hparam == "beta"
    assert get_objective("beta_vae") is OBJECTIVES["beta_vae"]
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
