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

import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from tqdm import tqdm

from vaetransfer import fastpath
from vaetransfer.classify import classifier_columns, classifier_step
from vaetransfer.io import atomic_path
from vaetransfer.losslog import LossLog
from vaetransfer.losslog import NonFiniteLoss, kl_columns, kl_per_dimension, log_columns  # noqa: F401
from vaetransfer.models import NamedLayers, build_model, images_to_tensor, is_vae
from vaetransfer.objectives import COMMON_TERMS, logged_terms, objective_terms
from vaetransfer.resume import ResumeDir, StopRequested, stop_on_signals
from vaetransfer.runtime import keep_freed_memory
from vaetransfer.trainconfig import TrainConfig

CHECKPOINT_FORMAT = "vaetransfer-checkpoint"
FORMAT_VERSION = 1
LOG_COLUMNS: tuple[str, ...] = ("step", *COMMON_TERMS)  # every run's; extras follow
# Steps between moves of the logged terms to the host, where they are checked for NaN/inf and
# the progress bar's loss is updated: each move costs one device sync.
_HOST_EVERY = 200
_logger = logging.getLogger(__name__)


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

    Init draws on CPU (see NamedLayers.reset_parameters), noise on ``config.device``.
    """
    init_seed, noise_seed = np.random.SeedSequence(config.seed).generate_state(2)
    init = torch.Generator(device="cpu").manual_seed(int(init_seed))
    noise = torch.Generator(device=config.device).manual_seed(int(noise_seed))
    return init, noise


def train_step(
    model: NamedLayers,
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
    path: str | Path, model: NamedLayers, optimizer: torch.optim.Optimizer, step: int, config: TrainConfig
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
    config: TrainConfig, images: np.ndarray, train_indices: Any, checkpoint_paths: Mapping[int, Any],
    labels: np.ndarray | None = None,
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
    if is_vae(config.architecture) != (labels is None):
        raise ValueError(f"labels are needed by the classifier and only by it (architecture {config.architecture!r})")
    if labels is not None:
        sizes = np.asarray(list(config.factors.values()))
        if labels.shape != (len(images), len(sizes)) or labels.dtype != np.int64:
            raise ValueError(f"labels must be int64 ({len(images)}, {len(sizes)}), got {labels.dtype} {labels.shape}")
        if (labels < 0).any() or (labels >= sizes).any():
            raise ValueError(f"labels must lie in 0..classes-1 of factors {config.factors}")
    return indices.astype(np.int64)


def build_for(config: TrainConfig) -> NamedLayers:
    """A fresh model of ``config.architecture`` with the run's Keras-default initial weights."""
    args = {"channels": config.channels}
    args.update({"latent_dim": config.latent_dim} if is_vae(config.architecture) else {"factor_sizes": list(config.factors.values())})
    model = build_model(config.architecture, **args)
    model.reset_parameters(generator=_generators(config)[0])
    return model


def start_from_source(model: NamedLayers, config: TrainConfig, device: str | torch.device = "cpu") -> None:
    """Transfer initialisation (spec §6.1): load ``config.init_checkpoint``'s weights into ``model``,
    re-initialise ``config.retrain_layers`` from the run's seed and freeze every other layer.

    The source must be the same architecture with the same constructor arguments (channels,
    latent size); a mismatch raises ValueError naming the checkpoint.
    """
    path = config.init_checkpoint
    source, ckpt = load_checkpoint(path, device="cpu")
    src_arch = ckpt["config"].get("architecture", "conv")
    if src_arch != config.architecture or ckpt["model_args"] != model.model_args():
        raise ValueError(
            f"{path}: a {src_arch} model {ckpt['model_args']} cannot start a {config.architecture} "
            f"run {model.model_args()} (datasets must have the same channels)"
        )
    model.load_state_dict(source.state_dict())
    # A stream of its own, so transfer runs of one seed re-initialise the same way whatever was loaded.
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([config.seed, 1]).generate_state(1)[0]))
    model.reset_parameters(config.retrain_layers, generator=generator)
    retrain = set(config.retrain_layers)
    for name, module in model.layer_modules().items():
        module.requires_grad_(name in retrain)


def _stepper(config: TrainConfig, model, optimizer, noise_gen, labels) -> tuple[tuple[str, ...], Callable]:
    """(logged columns, step function ``(batch indices, x, step) -> {term: 0-d tensor}``)."""
    if is_vae(config.architecture):
        def vae(idx, x, step):
            return train_step(model, optimizer, x, config.objective, config.hparam, step - 1, noise_gen,
                              config.objective_options)
        return log_columns(config.objective, config.latent_dim)[1:], vae
    columns = classifier_columns(config.factors)
    labels_t = torch.from_numpy(labels).to(config.device)  # (N, heads) int64: small, kept on device

    def classifier(idx, x, step):
        y = labels_t[torch.from_numpy(idx).to(config.device)]
        return dict(zip(columns, classifier_step(model, optimizer, x, y)))
    return columns, classifier


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
    labels: np.ndarray | None = None,
) -> None:
    """Train a fresh model of ``config.architecture`` for ``config.steps`` updates (spec §2-§3).

    ``images``: uint8 (N, 64, 64, C), possibly a ``np.memmap``; batches are drawn from
    ``train_indices`` only. ``labels`` (classifier only): int64 (N, heads) class labels
    (:func:`vaetransfer.classify.factor_labels`). ``checkpoint_paths`` maps each of
    ``config.checkpoint_steps`` to its file. The loss log is rewritten at every checkpoint and at
    the end. ``threads`` sets ``torch.set_num_threads`` (process-wide) when given. A NaN or
    infinite loss term raises :class:`NonFiniteLoss` (within :data:`_HOST_EVERY` steps, and before
    anything is written at or after the bad step); what was written before it stays valid.

    With ``resume_dir`` the run is resumable (:mod:`vaetransfer.resume`): its state is saved every
    ``save_every`` steps and on SIGTERM/SIGINT/SIGUSR1 (then :class:`StopRequested` is raised),
    and a later call with the same config continues from it, bit-identically on CPU.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    keep_freed_memory()
    indices = _check_inputs(config, images, train_indices, checkpoint_paths, labels)
    _, noise_gen = _generators(config)
    model = build_for(config)
    if config.init_checkpoint is not None:
        start_from_source(model, config)
    model.to(config.device).train()
    # Only what trains is in the (fresh) optimiser: frozen layers keep their weights exactly.
    trainable = [p for p in model.parameters() if p.requires_grad]
    if config.fastpath:
        options = fastpath.FastPath()
        fastpath.accelerate(model, config.device, options)
        optimizer = fastpath.make_adam(trainable, config.device, options, lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    else:
        optimizer = torch.optim.Adam(trainable, lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    batches = epoch_batches(indices, config.batch_size, np.random.default_rng(config.seed))
    columns, step_fn = _stepper(config, model, optimizer, noise_gen, labels)
    shown = logged_terms(config.objective) if is_vae(config.architecture) else columns
    log = LossLog(loss_log_path, columns, shown=shown)
    resume = ResumeDir(resume_dir) if resume_dir is not None else None
    done = _restore(resume, config, model, optimizer, noise_gen, log, checkpoint_paths)
    for _ in range(done):  # the batch order is a pure function of the seed: replay it
        next(batches)
    bar = tqdm(
        total=config.steps, initial=done,
        desc=f"train {config.dataset}/{config.architecture}/{config.objective}={config.hparam:g}/seed{config.seed}",
        file=sys.stderr, mininterval=5.0, disable=not progress,
    )
    with bar, stop_on_signals() as stop_signal:
        for step in range(done + 1, config.steps + 1):
            idx = next(batches)
            terms = step_fn(idx, images_to_tensor(images[idx], config.device), step)
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


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[NamedLayers, dict]:
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
    # Checkpoints written before the architecture field existed are conv VAEs.
    model = build_model(ckpt["config"].get("architecture", "conv"), **ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt
