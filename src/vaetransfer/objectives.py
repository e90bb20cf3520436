"""VAE learning objectives, disentanglement_lib style (spec reference.md §2, aesthetics.md §8.1-8.3).

The ELBO is written once (:func:`compute_loss`): a Bernoulli reconstruction term on the decoder
logits and the analytic Gaussian KL. Each objective is then a small pure function of
:class:`LossTerms` and its hyper-parameter, whose docstring gives the formula and the equation it
implements, registered under the key used in configs, wildcards and file names (:data:`OBJECTIVES`).
Objectives do no logging, hold no optimiser and mutate nothing; annealing schedules read
``terms.step``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from vaetransfer.models import VAEOutput


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


def beta_vae(terms: LossTerms, beta: float) -> Tensor:
    """β-VAE: rec + β·KL (Higgins et al. 2017, Eq. 4).

    β = 1 is the plain VAE, the paper's "vanilla VAE" (authors' ``model=beta_vae param_value=1``).
    """
    return terms.reconstruction + beta * terms.kl


@dataclass(frozen=True)
class Objective:
    """A registered objective: ``fn(terms, hparam_value) -> loss``; ``hparam`` names the value."""

    fn: Callable[[LossTerms, float], Tensor]
    hparam: str
    description: str


OBJECTIVES: dict[str, Objective] = {
    "beta_vae": Objective(beta_vae, "beta", "beta-VAE, rec + beta*KL (Higgins et al. 2017 Eq. 4)"),
}


def get_objective(name: str) -> Objective:
    """The registered objective ``name``; unknown names raise KeyError listing the valid keys."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise KeyError(f"unknown objective {name!r}; valid: {sorted(OBJECTIVES)}") from None


def objective_terms(
    objective_name: str, hparam_value: float, output: VAEOutput, x: Tensor, step: int
) -> tuple[Tensor, dict[str, Tensor]]:
    """Like :func:`compute_loss` but the named terms stay detached 0-d tensors on the model's
    device, so a training loop can log every step without a host sync per step."""
    objective = get_objective(objective_name)
    rec = bernoulli_reconstruction(output.logits, x)
    kl = gaussian_kl(output.mean, output.log_var)
    terms = LossTerms(rec, kl, output.mean, output.log_var, output.z, int(step))
    loss = objective.fn(terms, hparam_value)
    logged = {"loss": loss, "reconstruction": rec, "kl": kl, "elbo": -(rec + kl)}
    return loss, {k: v.detach() for k, v in logged.items()}


def compute_loss(
    objective_name: str, hparam_value: float, output: VAEOutput, x: Tensor, step: int
) -> tuple[Tensor, dict[str, float]]:
    """The loss to differentiate and the logged terms (spec §2, "Common").

    Returns ``(loss, {"loss", "reconstruction", "kl", "elbo"})`` with elbo = −(rec + KL), which is
    only logged (the authors' ``elbo_loss``). ``x``: targets (N, C, 64, 64) in [0, 1];
    ``step``: optimiser updates done so far (0 at the first).
    """
    loss, terms = objective_terms(objective_name, hparam_value, output, x, step)
    return loss, {k: float(v) for k, v in terms.items()}
