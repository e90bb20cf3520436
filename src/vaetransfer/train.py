"""Train one VAE: Adam, fixed-size minibatches, checkpoints at configured steps (spec reference.md §3).

Deliberate deviations from the authors' Keras loop (spec §3.1, §3.3), all for reproducibility:
- batches are a fresh permutation of ``train_indices`` every epoch (last partial batch dropped)
  drawn with ``np.random.default_rng(seed)``, instead of Keras' unseeded batch-order shuffle;
- training runs exactly ``config.steps`` optimiser updates (the caller chooses 300k or ≈0.9·300k);
- weight init and sampling noise come from generators seeded from ``config.seed``, so the same
  config gives bit-identical weights and loss logs on CPU with the same torch thread count (on
  GPU, cuDNN kernels need not be deterministic).

Artifacts: one torch checkpoint per configured step (a dict with ``state_dict``, ``optimizer``,
``step``, ``config``, ``model_args``, ``format``, ``format_version``; spec aesthetics.md §8.10) and a
Parquet loss log with one row per step (:func:`log_columns`: :data:`LOG_COLUMNS`, the objective's
extra terms, e.g. ``tc`` (:func:`vaetransfer.objectives.logged_terms`), then ``kl_0 … kl_{d-1}``, the
batch-mean KL of each latent dimension, which sum to ``kl``: posterior collapse is logged, not an
error). Every write is atomic.

A NaN or infinite logged term stops the run with :class:`NonFiniteLoss` naming the first bad step
and term. The logged terms stay on the device and are checked when they are moved to the host
(every :data:`_HOST_EVERY` steps, and before every checkpoint, resume state or loss-log write), so
there is no host sync per step, and nothing is written at or after a non-finite step.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from tqdm import tqdm

from vaetransfer.io import atomic_path
from vaetransfer.losslog import LossLog
from vaetransfer.losslog import NonFiniteLoss, kl_columns, kl_per_dimension, log_columns
from vaetransfer.models import ConvVAE, images_to_tensor
from vaetransfer.objectives import COMMON_TERMS, OBJECTIVES, logged_terms, objective_terms
from vaetransfer.resume import ResumeDir, StopRequested, stop_on_signals
from vaetransfer.runtime import keep_freed_memory

CHECKPOINT_FORMAT = "vaetransfer-checkpoint"
FORMAT_VERSION = 1
LOG_COLUMNS: tuple[str, ...] = ("step", *COMMON_TERMS)  # every run's; extras follow
# Steps between moves of the logged terms to the host, where they are checked for NaN/inf and
# the progress bar's loss is updated: each move costs one device sync.
_HOST_EVERY = 200
_logger = logging.getLogger(__name__)


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

    def __post_init__(self) -> None:
        self._check_names()
        self._check_numbers()
        self._check_checkpoints()

    def _check_names(self) -> None:
        for name in ("dataset", "device"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise _bad(name, value, "must be a non-empty string")
        if self.objective not in OBJECTIVES:
            raise _bad("objective", self.objective, f"valid: {sorted(OBJECTIVES)}")
        try:
            self.objective_options = OBJECTIVES[self.objective].resolve_options(self.objective_options)
        except (TypeError, ValueError) as exc:
            raise _bad("objective_options", self.objective_options, f"{self.objective}: {exc}") from None

    def _check_numbers(self) -> None:
        if not _is_real(self.hparam):
            raise _bad("hparam", self.hparam, "must be a finite number")
        self.hparam = float(self.hparam)
        try:
            OBJECTIVES[self.objective].check_hparam(self.hparam)
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


def epoch_batches(
    indices: np.ndarray, batch_size: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Endless minibatches of ``indices``: a new permutation per epoch, last partial batch dropped.

    Each batch is sorted, so reading it from a ``np.memmap`` walks the file forwards (the loss
    is a batch mean, so the order inside a batch is irrelevant).
    """
    n_batches = len(indices) // batch_size
    if n_batches == 0:
        raise ValueError(f"{len(indices)} training indices are fewer than one batch of {batch_size}")
    while True:
        order = rng.permutation(indices)
        for b in range(n_batches):
            yield np.sort(order[b * batch_size : (b + 1) * batch_size])


def _generators(config: TrainConfig) -> tuple[torch.Generator, torch.Generator]:
    """(init, noise) generators: two independent streams derived from ``config.seed``.

    Init draws on CPU (see ConvVAE.reset_parameters), noise on ``config.device``.
    """
    init_seed, noise_seed = np.random.SeedSequence(config.seed).generate_state(2)
    init = torch.Generator(device="cpu").manual_seed(int(init_seed))
    noise = torch.Generator(device=config.device).manual_seed(int(noise_seed))
    return init, noise


def train_step(
    model: ConvVAE,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    objective: str,
    hparam: float,
    step: int,
    generator: torch.Generator | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """One optimiser update on batch ``x`` (N, C, 64, 64); returns detached 0-d logged terms.

    The terms are the objective's (:func:`vaetransfer.objectives.logged_terms`) and ``kl_i``, the
    batch-mean KL of latent dimension i (:func:`kl_per_dimension`; they sum to ``kl``).
    ``step`` = updates already done (0 at the first), as annealing objectives expect (spec §2);
    ``options``: the objective's keyword options.
    """
    output = model(x, generator=generator)
    loss, terms = objective_terms(objective, hparam, output, x, step, options)
    kl_dims = kl_per_dimension(output.mean.detach(), output.log_var.detach())
    terms.update(zip(kl_columns(len(kl_dims)), kl_dims.unbind()))  # views: no copy, no sync
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return terms


def save_checkpoint(
    path: str | Path, model: ConvVAE, optimizer: torch.optim.Optimizer, step: int, config: TrainConfig
) -> None:
    """Write a self-describing checkpoint atomically (torch.save to a temp file, then rename)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "config": config.to_dict(),
        "model_args": model.model_args(),
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _check_inputs(
    config: TrainConfig, images: np.ndarray, train_indices: Any, checkpoint_paths: Mapping[int, Any]
) -> np.ndarray:
    """Validate the data and outputs against ``config``; return indices as an int64 array."""
    expected = (64, 64, config.channels)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected or images.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 (N, {', '.join(map(str, expected))}), "
            f"got {images.dtype} {tuple(images.shape)}"
        )
    indices = np.asarray(train_indices)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"train_indices must be a 1-D integer array, got {indices.dtype} {indices.shape}")
    if len(indices) and (indices.min() < 0 or indices.max() >= len(images)):
        raise ValueError(f"train_indices must lie in [0, {len(images)})")
    if len(indices) < config.batch_size:
        raise ValueError(f"{len(indices)} train_indices are fewer than one batch of {config.batch_size}")
    if set(checkpoint_paths) != set(config.checkpoint_steps):
        raise ValueError(
            f"checkpoint_paths keys {sorted(checkpoint_paths)} != "
            f"config.checkpoint_steps {config.checkpoint_steps}"
        )
    return indices.astype(np.int64)


def train(
    config: TrainConfig,
    images: np.ndarray,
    train_indices: Any,
    checkpoint_paths: Mapping[int, str | Path],
    loss_log_path: str | Path,
    progress: bool = True,
    threads: int | None = None,
    resume_dir: str | Path | None = None,
    save_every: int | None = None,
) -> None:
    """Train a fresh :class:`ConvVAE` for ``config.steps`` updates (spec §2-§3).

    ``images``: uint8 (N, 64, 64, C), possibly a ``np.memmap``; batches are drawn from
    ``train_indices`` only. ``checkpoint_paths`` maps each of ``config.checkpoint_steps`` to its
    file. The loss log is rewritten at every checkpoint and at the end. ``threads`` sets
    ``torch.set_num_threads`` (process-wide) when given. A NaN or infinite loss term raises
    :class:`NonFiniteLoss` (within :data:`_HOST_EVERY` steps, and before anything is written at or
    after the bad step); what was written before it stays valid.

    With ``resume_dir`` the run is resumable (:mod:`vaetransfer.resume`): its state is saved every
    ``save_every`` steps and on SIGTERM/SIGINT/SIGUSR1 (then :class:`StopRequested` is raised),
    and a later call with the same config continues from it, bit-identically on CPU.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    keep_freed_memory()
    indices = _check_inputs(config, images, train_indices, checkpoint_paths)
    init_gen, noise_gen = _generators(config)
    model = ConvVAE(channels=config.channels, latent_dim=config.latent_dim)
    model.reset_parameters(generator=init_gen)
    model.to(config.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    batches = epoch_batches(indices, config.batch_size, np.random.default_rng(config.seed))
    columns = log_columns(config.objective, config.latent_dim)[1:]
    log = LossLog(loss_log_path, columns, shown=logged_terms(config.objective))
    resume = ResumeDir(resume_dir) if resume_dir is not None else None
    done = _restore(resume, config, model, optimizer, noise_gen, log, checkpoint_paths)
    for _ in range(done):  # the batch order is a pure function of the seed: replay it
        next(batches)
    bar = tqdm(
        total=config.steps, initial=done,
        desc=f"train {config.dataset}/{config.objective}={config.hparam:g}/seed{config.seed}",
        file=sys.stderr, mininterval=5.0, disable=not progress,
    )
    with bar, stop_on_signals() as stop_signal:
        for step in range(done + 1, config.steps + 1):
            x = images_to_tensor(images[next(batches)], config.device)
            terms = train_step(
                model, optimizer, x, config.objective, config.hparam, step - 1, noise_gen,
                config.objective_options,
            )
            log.append(step, terms)
            if step in checkpoint_paths:
                log.to_host()  # raises NonFiniteLoss before a checkpoint at or after a bad step
                save_checkpoint(checkpoint_paths[step], model, optimizer, step, config)
                log.flush()
                if resume is not None:
                    resume.keep_checkpoint(checkpoint_paths[step])
            if step % _HOST_EVERY == 0:
                log.to_host()
                bar.set_postfix(loss=f"{log.last('loss'):.2f}", refresh=False)
            bar.update()
            if resume is not None and step < config.steps:
                signum = stop_signal()
                if signum is not None or (save_every and step % save_every == 0):
                    resume.save(step, config.to_dict(), model, optimizer, noise_gen, log.rows())
                if signum is not None:
                    raise StopRequested(f"stopped by signal {signum} after step {step}; state saved in {resume.path}")
    log.flush()
    if resume is not None:
        resume.clear()


def _restore(resume, config, model, optimizer, noise_gen, log, checkpoint_paths) -> int:
    """Load a saved resume state into the fresh objects; returns the steps already done (0 if none)."""
    state = resume.load(config.to_dict()) if resume is not None else None
    if state is None:
        return 0
    if tuple(state["loss_rows"].get("columns", ())) != log.columns:  # saved by an older version
        _logger.warning("ignoring %s: its loss log has other columns; starting over", resume.state_file)
        return 0
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    noise_gen.set_state(state["noise_generator"])
    log.restore(state["loss_rows"])
    resume.restore_checkpoints(checkpoint_paths, state["step"])
    return int(state["step"])


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[ConvVAE, dict]:
    """Rebuild the model of a checkpoint written by :func:`train`, on ``device``, in eval mode.

    Returns ``(model, checkpoint_dict)``. Raises ValueError naming ``path`` if the file is not a
    vaetransfer checkpoint (or is of a newer format version).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file {path}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoint files
        raise ValueError(f"{path} is not a vaetransfer checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a vaetransfer checkpoint (no format={CHECKPOINT_FORMAT!r})")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {ckpt['format_version']} > {FORMAT_VERSION}")
    model = ConvVAE(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt
