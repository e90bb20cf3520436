"""VAE learning objectives, disentanglement_lib style (spec reference.md §2, aesthetics.md §8.1-8.3).

The ELBO is written once (:func:`objective_terms`): a Bernoulli reconstruction term on the decoder
logits and the analytic Gaussian KL. Each objective is then a small pure function of
:class:`LossTerms` and its hyper-parameter, whose docstring gives the formula and the equation it
implements, registered under the key used in configs, wildcards and file names (:data:`OBJECTIVES`).
The mathematical pieces (:func:`total_correlation`, :func:`annealed_capacity`,
:func:`dip_regulariser`) are free functions, each tested against a closed form. Objectives do no
logging, hold no optimiser and mutate nothing; annealing schedules read ``terms.step``.

The quantity an objective adds to rec + KL is also logged (:attr:`Objective.extras`), unweighted by
its hyper-parameter: ``tc``, ``capacity`` or ``dip_regulariser``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from vaetransfer.models import VAEOutput

#: Annealed VAE: weight γ of |KL − C| and the updates over which C grows from 0 to C_max
#: (Burgess et al. 2018; dlib ``AnnealedVAE``; the authors' ``model/annealed_vae.yaml``).
ANNEALED_GAMMA = 1000.0
ANNEALED_ITERATION_THRESHOLD = 100_000
#: DIP-VAE-II: λ_d = factor·λ_od, with factor 1 for type II (dlib ``dip_vae_ii``, authors' config).
DIP_II_LAMBDA_D_FACTOR = 1.0
#: β-TC-VAE variants (:func:`beta_tc_vae`); the first is the default.
BETA_TC_VARIANTS = ("total_correlation", "authors_beta_vae")


def bernoulli_reconstruction(logits: Tensor, x: Tensor) -> Tensor:
    """Bernoulli negative log-likelihood on logits, as dlib's ``bernoulli_loss`` (spec §2).

    -Σ_pixels,channels [x·log σ(l) + (1−x)·log(1−σ(l))], averaged over the batch; computed with
    ``binary_cross_entropy_with_logits`` (stable for large |l|). Targets x in [0, 1] may be
    non-binary; the target entropy is not subtracted (dlib ``subtract_true_image_entropy=False``).

    logits, x: (N, C, H, W) -> scalar.
    """
    per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return per_pixel.flatten(1).sum(dim=1).mean()


def gaussian_kl(mean: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(μ, σ²) || N(0, I)) = 0.5·Σ_latent(μ² + σ² − log σ² − 1), averaged over the batch.

    Kingma & Welling 2014 Appendix B; dlib ``compute_gaussian_kl``. mean, log_var: (N, d) -> scalar.
    """
    per_dim = 0.5 * (mean.square() + log_var.exp() - log_var - 1.0)
    return per_dim.sum(dim=1).mean()


@dataclass
class LossTerms:
    """What an objective may use. ``reconstruction``/``kl`` are batch means (scalars);
    ``mean, log_var, z``: (N, d); ``step``: optimiser updates already done (0 at the first
    update, like TF's ``optimizer.iterations``)."""

    reconstruction: Tensor
    kl: Tensor
    mean: Tensor
    log_var: Tensor
    z: Tensor
    step: int


def vae(terms: LossTerms, beta: float = 1.0) -> Tensor:
    """Vanilla VAE: rec + KL, the negative ELBO (Kingma & Welling 2014, Eq. 3).

    The same loss as β-VAE with β = 1 (the authors' "vanilla VAE" is ``beta_vae`` with
    ``param_value=1``). Its hyper-parameter is named ``beta`` and may only be 1, so that every run
    has a (name, value) pair in the tables; any other value raises ValueError.
    """
    if beta != 1:
        raise ValueError(f"objective 'vae' is beta_vae with beta = 1; got beta={beta!r} (use beta_vae)")
    return terms.reconstruction + terms.kl


def beta_vae(terms: LossTerms, beta: float) -> Tensor:
    """β-VAE: rec + β·KL (Higgins et al. 2017, Eq. 4).

    β = 1 is the plain VAE, the paper's "vanilla VAE" (authors' ``model=beta_vae param_value=1``).
    """
    return terms.reconstruction + beta * terms.kl


def gaussian_log_density(samples: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """log N(samples; mean, exp(log_var)), elementwise with broadcasting (dlib ``gaussian_log_density``).

    −0.5·((s − μ)²·exp(−log σ²) + log σ² + log 2π).
    """
    return -0.5 * ((samples - mean).square() * torch.exp(-log_var) + log_var + math.log(2 * math.pi))


def total_correlation(z: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """Minibatch-weighted-sampling estimate of TC = KL(q(z) || Π_l q(z_l)), as dlib's ``total_correlation``.

    Chen et al. 2018 §4.1, *without* the log(N·M) constants (dlib, the authors' ``BetaTCVAE``): with
    log q(z_jl | x_i) for all batch pairs (j, i) and latents l (an N × N × d tensor),
    log q(z_j) ≈ logsumexp_i Σ_l log q(z_jl | x_i), log Π_l q(z_jl) ≈ Σ_l logsumexp_i log q(z_jl | x_i),
    TC = mean_j [log q(z_j) − log Π_l q(z_jl)]. Dropping the constants shifts the estimate by
    −(d − 1)·log N (so identical posteriors give exactly −(d − 1)·log N); gradients are unchanged.

    z: sampled latents, mean, log_var: (N, d) -> scalar.
    """
    log_qz_prob = gaussian_log_density(z.unsqueeze(1), mean.unsqueeze(0), log_var.unsqueeze(0))
    log_qz_product = torch.logsumexp(log_qz_prob, dim=1).sum(dim=1)
    log_qz = torch.logsumexp(log_qz_prob.sum(dim=2), dim=1)
    return (log_qz - log_qz_product).mean()


def beta_tc_vae(terms: LossTerms, beta: float, *, variant: str = BETA_TC_VARIANTS[0]) -> Tensor:
    """β-TC-VAE: rec + KL + (β − 1)·TC (Chen et al. 2018, Eq. 4 with α = γ = 1; dlib ``BetaTCVAE``).

    TC is :func:`total_correlation` of the batch's sampled z (the one the reconstruction used).
    ``variant="authors_beta_vae"`` gives rec + β·KL instead: the authors' ``beta_tc_vae`` config
    instantiates ``BetaVAE`` (spec reference.md §2, §9), so their "β-TC-VAE" models are β-VAEs.
    """
    if variant == "total_correlation":
        tc = total_correlation(terms.z, terms.mean, terms.log_var)
        return terms.reconstruction + terms.kl + (beta - 1.0) * tc
    if variant == "authors_beta_vae":
        return beta_vae(terms, beta)
    raise ValueError(f"beta_tc_vae: unknown variant {variant!r}; valid: {list(BETA_TC_VARIANTS)}")


def annealed_capacity(step: int, c_max: float) -> float:
    """C = min(C_max, C_max·step / 100,000): Burgess et al. 2018's linear capacity schedule (dlib ``anneal``).

    ``step``: optimiser updates already done (0 at the first); C reaches C_max at step
    :data:`ANNEALED_ITERATION_THRESHOLD` and stays there.
    """
    return min(c_max, c_max * step / ANNEALED_ITERATION_THRESHOLD)


def annealed_vae(terms: LossTerms, c_max: float) -> Tensor:
    """Annealed VAE: rec + γ·|KL − C| (Burgess et al. 2018, Eq. 8; dlib ``AnnealedVAE``).

    γ = :data:`ANNEALED_GAMMA` (1000), C = :func:`annealed_capacity` (terms.step, C_max).
    """
    capacity = annealed_capacity(terms.step, c_max)
    return terms.reconstruction + ANNEALED_GAMMA * (terms.kl - capacity).abs()


def covariance_z(mean: Tensor, log_var: Tensor) -> Tensor:
    """Cov[z] = Cov_batch(μ) + mean_batch(diag σ²) (Kumar et al. 2018, DIP-VAE-II; dlib ``DIPVAE``).

    Cov_batch(μ) = E[μμᵀ] − E[μ]E[μ]ᵀ over the batch (biased, as dlib's
    ``compute_covariance_z_mean``). mean, log_var: (N, d) -> (d, d).
    """
    n = mean.shape[0]
    second_moment = mean.T @ mean / n
    expected = mean.mean(dim=0)
    return second_moment - torch.outer(expected, expected) + torch.diag(log_var.exp().mean(dim=0))


def dip_regulariser(cov: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    """λ_od·Σ_{i≠j} Cov_ij² + λ_d·Σ_i (Cov_ii − 1)² (Kumar et al. 2018, Eq. 7; dlib
    ``regularize_diag_off_diag_dip``). cov: (d, d) -> scalar."""
    diagonal = torch.diagonal(cov)
    off_diagonal = cov - torch.diag(diagonal)
    return lambda_od * off_diagonal.square().sum() + lambda_d * (diagonal - 1.0).square().sum()


def dip_vae_ii(terms: LossTerms, lambda_od: float) -> Tensor:
    """DIP-VAE-II: rec + KL + λ_od·Σ_{i≠j} Cov[z]_ij² + λ_d·Σ_i (Cov[z]_ii − 1)² (Kumar et al. 2018, Eq. 7).

    Cov[z] = :func:`covariance_z` (μ, log σ²) of the batch; λ_d = :data:`DIP_II_LAMBDA_D_FACTOR`·λ_od
    = λ_od (dlib ``dip_vae_ii``, the authors' config).
    """
    cov = covariance_z(terms.mean, terms.log_var)
    penalty = dip_regulariser(cov, lambda_od, DIP_II_LAMBDA_D_FACTOR * lambda_od)
    return terms.reconstruction + terms.kl + penalty


# Logged extras: the quantity each objective adds, before its hyper-parameter weight.
def _logged_tc(terms: LossTerms, beta: float) -> Tensor:
    return total_correlation(terms.z, terms.mean, terms.log_var)


def _logged_capacity(terms: LossTerms, c_max: float) -> Tensor:
    return terms.kl.new_full((), annealed_capacity(terms.step, c_max))  # a fill, no host->device copy


def _logged_dip(terms: LossTerms, lambda_od: float) -> Tensor:
    return dip_regulariser(covariance_z(terms.mean, terms.log_var), 1.0, DIP_II_LAMBDA_D_FACTOR)


@dataclass(frozen=True)
class Objective:
    """A registered objective: ``fn(terms, hparam_value, **options) -> loss``.

    ``hparam`` names the hyper-parameter (the ``hparam_name`` column); ``hparam_values`` lists the
    only allowed values (None: any finite number). ``extras`` maps each extra logged term to a
    function of ``(terms, hparam_value)``. ``options`` maps each keyword option of ``fn`` to its
    allowed values, the first being the default (config: ``training.objective_options.<key>``).
    """

    fn: Callable[..., Tensor]
    hparam: str
    description: str
    extras: Mapping[str, Callable[[LossTerms, float], Tensor]] = field(default_factory=dict)
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    hparam_values: tuple[float, ...] | None = None

    def check_hparam(self, value: float) -> None:
        """Raise ValueError if ``value`` is not an allowed value of the hyper-parameter."""
        if self.hparam_values is not None and value not in self.hparam_values:
            raise ValueError(f"{self.hparam}={value!r} is not allowed; valid: {list(self.hparam_values)}")

    def resolve_options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``options`` with defaults filled in; unknown names or values raise ValueError."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; valid: {sorted(self.options)}")
        for name, value in options.items():
            if value not in self.options[name]:
                raise ValueError(f"option {name}={value!r}; valid: {list(self.options[name])}")
        return {name: options.get(name, allowed[0]) for name, allowed in self.options.items()}


OBJECTIVES: dict[str, Objective] = {
    "vae": Objective(vae, "beta", "VAE, rec + KL (Kingma & Welling 2014 Eq. 3); beta fixed at 1",
                     hparam_values=(1.0,)),
    "beta_vae": Objective(beta_vae, "beta", "beta-VAE, rec + beta*KL (Higgins et al. 2017 Eq. 4)"),
    "beta_tc_vae": Objective(
        beta_tc_vae, "beta", "beta-TC-VAE, rec + KL + (beta-1)*TC (Chen et al. 2018 Eq. 4)",
        extras={"tc": _logged_tc}, options={"variant": BETA_TC_VARIANTS},
    ),
    "annealed_vae": Objective(
        annealed_vae, "c_max", "annealed VAE, rec + gamma*|KL - C| (Burgess et al. 2018 Eq. 8)",
        extras={"capacity": _logged_capacity},
    ),
    "dip_vae_ii": Objective(
        dip_vae_ii, "lambda_od", "DIP-VAE-II, rec + KL + DIP covariance penalty (Kumar et al. 2018 Eq. 7)",
        extras={"dip_regulariser": _logged_dip},
    ),
}

#: Terms logged for every objective; :func:`logged_terms` appends the objective's extras.
COMMON_TERMS: tuple[str, ...] = ("loss", "reconstruction", "kl", "elbo")


def get_objective(name: str) -> Objective:
    """The registered objective ``name``; unknown names raise KeyError listing the valid keys."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise KeyError(f"unknown objective {name!r}; valid: {sorted(OBJECTIVES)}") from None


def logged_terms(objective_name: str) -> tuple[str, ...]:
    """Names of the terms :func:`objective_terms` returns for ``objective_name``, in order."""
    return COMMON_TERMS + tuple(get_objective(objective_name).extras)


def objective_terms(
    objective_name: str,
    hparam_value: float,
    output: VAEOutput,
    x: Tensor,
    step: int,
    options: Mapping[str, Any] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Like :func:`compute_loss` but the named terms stay detached 0-d tensors on the model's
    device, so a training loop can log every step without a host sync per step."""
    objective = get_objective(objective_name)
    rec = bernoulli_reconstruction(output.logits, x)
    kl = gaussian_kl(output.mean, output.log_var)
    terms = LossTerms(rec, kl, output.mean, output.log_var, output.z, int(step))
    loss = objective.fn(terms, hparam_value, **(options or {}))
    logged = {"loss": loss, "reconstruction": rec, "kl": kl, "elbo": -(rec + kl)}
    with torch.no_grad():
        logged.update({name: extra(terms, hparam_value) for name, extra in objective.extras.items()})
    return loss, {k: v.detach() for k, v in logged.items()}


def compute_loss(
    objective_name: str,
    hparam_value: float,
    output: VAEOutput,
    x: Tensor,
    step: int,
    options: Mapping[str, Any] | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The loss to differentiate and the logged terms (spec §2, "Common").

    Returns ``(loss, terms)``: ``terms`` holds ``loss, reconstruction, kl, elbo`` and the
    objective's extras (:func:`logged_terms`), with elbo = −(rec + KL), which is only logged (the
    authors' ``elbo_loss``). ``x``: targets (N, C, 64, 64) in [0, 1]; ``step``: optimiser updates
    done so far (0 at the first); ``options``: keyword options of the objective (``Objective.options``).
    """
    loss, terms = objective_terms(objective_name, hparam_value, output, x, step, options)
    return loss, {k: float(v) for k, v in terms.items()}
