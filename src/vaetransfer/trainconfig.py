"""The configuration of one training run, validated on construction (spec reference.md §2-§3).

A :class:`TrainConfig` is stored, resolved, in every checkpoint and resume state: it is what makes
an artifact describe itself, and what a resumed run must match.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping

from vaetransfer.classify import CLASSIFIER_OBJECTIVES
from vaetransfer.models import ARCHITECTURES, is_vae
from vaetransfer.objectives import OBJECTIVES


def objective_registry(architecture: str) -> Mapping[str, Any]:
    """The objectives an architecture trains with: VAE objectives, or the classifier's."""
    return OBJECTIVES if is_vae(architecture) else CLASSIFIER_OBJECTIVES


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _bad(name: str, value: Any, why: str) -> ValueError:
    return ValueError(f"TrainConfig.{name}={value!r}: {why}")


@dataclass
class TrainConfig:
    """Everything that determines a training run (spec §2 optimiser, §3.1 schedule).

    ``hparam`` is the objective's hyper-parameter (``OBJECTIVES[objective].hparam``, e.g. β);
    ``objective_options`` its keyword options (``OBJECTIVES[objective].options``), stored with
    the defaults filled in.
    ``architecture``: a key of :data:`vaetransfer.models.ARCHITECTURES`; the classifier trains
    with a :data:`vaetransfer.classify.CLASSIFIER_OBJECTIVES` objective and needs ``factors``
    ({factor: classes}, one head each, in order; empty for VAEs).
    Transfer (spec §6.1): with ``init_checkpoint`` (a source model's checkpoint of the same
    architecture) the run starts from its weights; the ``retrain_layers`` (weight-bearing layer
    names, e.g. ``["mean", "log_var"]``) are re-initialised (Keras defaults, from the run's seed)
    and trained, every other layer is frozen, and the Adam optimiser is fresh, as the authors'
    ``bin/transfer`` does ("retraining" = re-initialise and train, not fine-tune).
    ``fastpath``: the float32-exact speed-ups of :mod:`vaetransfer.fastpath` (NHWC convolutions,
    sub-pixel last layer, fused Adam); results equal the plain run's up to float rounding.
    ``checkpoint_steps``: sorted, distinct steps in 1..steps, including ``steps``; a checkpoint
    at step s holds the model after s optimiser updates. ``validation_fraction`` records how
    the caller's train/validation split was made (the split itself is the caller's).
    """

    dataset: str
    objective: str
    hparam: float
    seed: int
    steps: int
    checkpoint_steps: list[int]
    batch_size: int = 64
    lr: float = 1e-4
    latent_dim: int = 10
    channels: int = 1
    validation_fraction: float = 0.1
    device: str = "cpu"
    objective_options: dict[str, Any] = field(default_factory=dict)
    architecture: str = "conv"
    factors: dict[str, int] = field(default_factory=dict)
    init_checkpoint: str | None = None
    retrain_layers: list[str] | None = None
    fastpath: bool = False

    def __post_init__(self) -> None:
        self._check_names()
        self._check_numbers()
        self._check_checkpoints()
        self._check_transfer()

    def _check_names(self) -> None:
        for name in ("dataset", "device"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise _bad(name, value, "must be a non-empty string")
        if self.architecture not in ARCHITECTURES:
            raise _bad("architecture", self.architecture, f"valid: {sorted(ARCHITECTURES)}")
        registry = objective_registry(self.architecture)
        if self.objective not in registry:
            raise _bad("objective", self.objective, f"valid for {self.architecture}: {sorted(registry)}")
        if is_vae(self.architecture) != (not self.factors):
            raise _bad("factors", self.factors, "the classifier needs factors, a VAE none")
        if any(not _is_int(k) or k < 2 for k in self.factors.values()):
            raise _bad("factors", self.factors, "each factor needs an integer number of classes >= 2")
        try:
            self.objective_options = registry[self.objective].resolve_options(self.objective_options)
        except (TypeError, ValueError) as exc:
            raise _bad("objective_options", self.objective_options, f"{self.objective}: {exc}") from None

    def _check_numbers(self) -> None:
        if not _is_real(self.hparam):
            raise _bad("hparam", self.hparam, "must be a finite number")
        self.hparam = float(self.hparam)
        try:
            objective_registry(self.architecture)[self.objective].check_hparam(self.hparam)
        except ValueError as exc:
            raise _bad("hparam", self.hparam, f"{self.objective}: {exc}") from None
        minimum = {"seed": 0, "steps": 1, "batch_size": 1, "latent_dim": 1, "channels": 1}
        for name, low in minimum.items():
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise _bad(name, value, f"must be an integer >= {low}")
            setattr(self, name, int(value))
        if not _is_real(self.lr) or self.lr <= 0:
            raise _bad("lr", self.lr, "must be a finite number > 0")
        self.lr = float(self.lr)
        if not _is_real(self.validation_fraction) or not 0 <= self.validation_fraction < 1:
            raise _bad("validation_fraction", self.validation_fraction, "must be in [0, 1)")
        self.validation_fraction = float(self.validation_fraction)

    def _check_transfer(self) -> None:
        if self.init_checkpoint is None:
            if self.retrain_layers is not None:
                raise _bad("retrain_layers", self.retrain_layers, "needs init_checkpoint (the source model)")
            return
        if not isinstance(self.init_checkpoint, str) or not self.init_checkpoint:
            raise _bad("init_checkpoint", self.init_checkpoint, "must be a checkpoint path")
        weighted = ARCHITECTURES[self.architecture].WEIGHTED
        layers = self.retrain_layers
        if isinstance(layers, (str, bytes)) or not layers or any(name not in weighted for name in layers):
            raise _bad("retrain_layers", layers, f"must list weight-bearing layers of {self.architecture}: {list(weighted)}")
        if len(set(layers)) != len(layers):
            raise _bad("retrain_layers", layers, "must not repeat a layer")
        self.retrain_layers = [name for name in weighted if name in set(layers)]  # canonical order

    def _check_checkpoints(self) -> None:
        steps = self.checkpoint_steps
        if isinstance(steps, (str, bytes)) or not all(_is_int(s) for s in steps):
            raise _bad("checkpoint_steps", steps, "must be a list of integers")
        steps = [int(s) for s in steps]
        if not steps or steps != sorted(set(steps)):
            raise _bad("checkpoint_steps", steps, "must be non-empty, sorted and distinct")
        if steps[0] < 1 or steps[-1] != self.steps:
            raise _bad("checkpoint_steps", steps, f"must lie in 1..{self.steps} and end at steps")
        self.checkpoint_steps = steps

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the "resolved config" stored in checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {sorted(known)}")
        return cls(**dict(values))




def run_config(
    dataset: str, architecture: str, objective: str, hparam: float, seed: int,
    run: Mapping[str, Any], channels: int, device: str, factors: Mapping[str, int] | None = None,
) -> TrainConfig:
    """The TrainConfig of one workflow run from its wildcards and resolved settings ``run``
    (workflow/rules/common.smk ``get_train_params``: steps, checkpoint_steps, batch_size,
    learning_rate, latent_dim, validation_fraction, objective_options)."""
    return TrainConfig(
        dataset=dataset,
        objective=objective,
        hparam=float(hparam),
        seed=int(seed),
        steps=run["steps"],
        checkpoint_steps=list(run["checkpoint_steps"]),
        batch_size=run["batch_size"],
        lr=run["learning_rate"],
        latent_dim=run["latent_dim"],
        channels=channels,
        validation_fraction=run["validation_fraction"],
        device=device,
        objective_options=dict(run["objective_options"]),
        fastpath=bool(run.get("fastpath", False)),
        architecture=architecture,
        factors=dict(factors or {}),
    )
