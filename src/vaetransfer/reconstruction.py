"""Reconstructions of target data by trained VAEs: issue 7 §2 (Fig. 6 / Appendix B grids and
held-out reconstruction losses) and §3 (Figs. 7, 8: target examples beside their reconstruction
by the source-trained VAE).

As the authors (spec reference.md §6.1, §6.2): reconstructions are sigmoid(decoder(**sampled** z)),
and the examples shown are the first ones of the target dataset's seed-0 *training* split.

The sampling noise of all examples is drawn at once from a CPU ``torch.Generator`` seeded with
``seed``, before any batching, so results do not depend on the batch size nor (up to float
round-off) on the device; on CPU, unbatched, they equal ``model(x, generator)`` exactly.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np
import torch

from vaetransfer.data.store import load_images, load_meta, split_indices
from vaetransfer.models.common import VAE, images_to_tensor
from vaetransfer.objectives import bernoulli_reconstruction
from vaetransfer.plotting import plt  # matplotlib with the headless Agg backend

#: The authors' batches: 16 examples for Figs. 7-8 (a 4x8 grid of pairs), 10 for Fig. 6.
PAIRS_EXAMPLES = 16
COLUMNS_EXAMPLES = 10


def _check_vae(model) -> None:
    if not isinstance(model, VAE):
        raise TypeError(f"reconstructions need a VAE, got {type(model).__name__}")


def _noise(n: int, latent_dim: int, seed: int) -> torch.Tensor:
    """eps ~ N(0, I), (n, latent_dim) float32 on CPU, the same draw as ``sample_latent`` makes
    with a CPU generator seeded ``seed`` for an unbatched (n, latent_dim) mean."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn((n, latent_dim), generator=generator, dtype=torch.float32)


def _logit_batches(
    model: VAE, images: np.ndarray, indices: np.ndarray, batch_size: int, seed: int,
    device: str | torch.device, use_mean: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, logits) per batch of ``images[indices]``, x (B, C, 64, 64) in [0, 1] on device.

    z = mean + exp(log_var / 2) * eps with eps from :func:`_noise` (or z = mean if ``use_mean``).
    """
    _check_vae(model)
    if isinstance(batch_size, bool) or int(batch_size) <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or len(indices) == 0:
        raise ValueError(f"indices must be a non-empty 1-D array, got shape {indices.shape}")
    eps = _noise(len(indices), model.latent_dim, seed)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(indices), int(batch_size)):
            stop = start + int(batch_size)
            x = images_to_tensor(images[indices[start:stop]], device)
            mean, log_var = model.encode(x)
            if not use_mean:
                mean = mean + torch.exp(0.5 * log_var) * eps[start:stop].to(mean.device, mean.dtype)
            yield x, model.decode(mean)


def reconstruct(
    model: VAE, images_uint8: np.ndarray, seed: int = 0, device: str | torch.device = "cpu",
    batch_size: int = 256, use_mean: bool = False,
) -> np.ndarray:
    """sigmoid(decoder(z)) of uint8 (n, 64, 64, C) images -> float32 (n, 64, 64, C) in [0, 1].

    z is sampled (the authors' choice) with noise seeded by ``seed``; ``use_mean`` decodes the
    posterior mean instead.
    """
    images_uint8 = np.asarray(images_uint8)
    if images_uint8.dtype != np.uint8 or images_uint8.ndim != 4:
        raise ValueError(f"images must be uint8 (n, 64, 64, C), got {images_uint8.dtype} {images_uint8.shape}")
    indices = np.arange(len(images_uint8))
    out = [
        torch.sigmoid(logits).permute(0, 2, 3, 1).float().cpu().numpy()
        for _, logits in _logit_batches(model, images_uint8, indices, batch_size, seed, device, use_mean)
    ]
    return np.concatenate(out).astype(np.float32, copy=False)


def reconstruction_loss(
    model: VAE, images: np.ndarray, indices: Sequence[int] | np.ndarray, batch_size: int = 256,
    seed: int = 0, device: str | torch.device = "cpu", use_mean: bool = False,
) -> float:
    """Mean over ``images[indices]`` of the Bernoulli negative log-likelihood summed over pixels
    and channels (the training loss's reconstruction term, :func:`bernoulli_reconstruction`).

    ``images`` is the uint8 (N, 64, 64, C) dataset (a memory map is fine; pass sorted indices,
    e.g. the held-out split of :func:`split_indices`, to read it forwards). Batched; the per-batch
    sums are accumulated in float64.
    """
    total, count = 0.0, 0
    batches = _logit_batches(model, images, np.asarray(indices), batch_size, seed, device, use_mean)
    for x, logits in batches:
        n = x.shape[0]
        total += float(bernoulli_reconstruction(logits, x).double()) * n
        count += n
    return total / count


def _length(meta: dict | int) -> int:
    """Dataset length from a meta.json dict (its ``n``) or an int."""
    if isinstance(meta, (int, np.integer)) and not isinstance(meta, bool):
        return int(meta)
    return int(meta["n"])


def heldout_indices(meta: dict | int, seed: int, fraction: float = 0.1, limit: int | None = None) -> np.ndarray:
    """Sorted validation indices of the split of ``seed`` (a model trained with that seed never
    saw them). ``limit`` keeps a uniformly drawn subset of that many (seeded by ``seed``), not the
    first ones: datasets such as dSprites are stored in factor order."""
    _, validation = split_indices(_length(meta), seed, fraction)
    if limit is not None and limit < len(validation):
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit!r}")
        keep = np.random.default_rng(seed).choice(len(validation), size=int(limit), replace=False)
        validation = validation[np.sort(keep)]
    return validation


def example_indices(meta: dict | int, count: int, seed: int = 0, fraction: float = 0.1) -> np.ndarray:
    """The first ``count`` indices of the training split of ``seed`` (validation ``fraction``):
    the examples the authors show (their first batch of the seed-0 training split).

    ``meta`` is a dataset's meta.json dict (its ``n`` is used) or the dataset length.
    """
    train, _ = split_indices(_length(meta), seed, fraction)
    if not 0 < count <= len(train):
        raise ValueError(f"count must lie in 1..{len(train)}, got {count!r}")
    return train[:count]


def target_examples(
    dataset_dir: str | os.PathLike, count: int, seed: int = 0, fraction: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, uint8 images) of :func:`example_indices` for a dataset directory."""
    indices = example_indices(load_meta(dataset_dir), count, seed, fraction)
    return indices, np.asarray(load_images(dataset_dir)[indices])


# ---------------------------------------------------------------------------------------------
# Figures (the authors' ImageGrid style: axes off, no padding, greyscale in cmap "gray")


def _displayable(images: np.ndarray) -> np.ndarray:
    """(n, H, W, C) uint8 or float in [0, 1] -> float32 in [0, 1]; (n, H, W) for C = 1."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (n, H, W, 1 | 3), got shape {images.shape}")
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    images = np.clip(images.astype(np.float32, copy=False), 0.0, 1.0)
    return images[..., 0] if images.shape[-1] == 1 else images


def _show(ax, image: np.ndarray) -> None:
    """One image, axis off. Greyscale on a fixed [0, 1] scale (the authors let imshow rescale
    each image to its own range, which exaggerates faint reconstructions)."""
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()


def _image_axes(rows: int, cols: int, cell_inches: float, title_inches: float = 0.0):
    """Figure + (rows, cols) array of axes tiling it with no padding; square cells of
    ``cell_inches``, plus a strip of ``title_inches`` on top for column titles."""
    width, height = cols * cell_inches, rows * cell_inches + title_inches
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1 - title_inches / height, wspace=0, hspace=0)
    return fig, axes


def pairs_grid(
    inputs: np.ndarray, recons: np.ndarray, rows: int = 4, cols: int = 8, cell_inches: float = 1.25
):
    """Figs. 7, 8: a rows x cols grid of (input, reconstruction) pairs side by side, as the
    authors' ``plot_images``: example i sits in row i // (cols / 2), its input in column
    2·(i mod cols/2) and its reconstruction just right of it (default 4 rows of 4 pairs =
    16 examples). Returns the matplotlib Figure."""
    if cols % 2:
        raise ValueError(f"cols must be even (pairs), got {cols}")
    inputs, recons = _displayable(inputs), _displayable(recons)
    n = rows * cols // 2
    if len(inputs) != n or inputs.shape != recons.shape:
        raise ValueError(
            f"need {n} inputs and reconstructions of one shape, got {inputs.shape} and {recons.shape}"
        )
    fig, axes = _image_axes(rows, cols, cell_inches)
    for i in range(n):
        row, pair = divmod(i, cols // 2)
        _show(axes[row, 2 * pair], inputs[i])
        _show(axes[row, 2 * pair + 1], recons[i])
    return fig


def columns_grid(
    inputs: np.ndarray, columns: Sequence[tuple[str, np.ndarray]], input_label: str = "input",
    cell_inches: float = 1.0, fontsize: float = 8.0,
):
    """Fig. 6 / Appendix B: one row per example; column 1 the inputs, then one column per model
    (``columns`` = [(label, reconstructions)], e.g. target-trained, source-trained, then each
    unfreezing level), titled by label. Returns the matplotlib Figure."""
    if not columns:
        raise ValueError("columns must hold at least one (label, images) pair")
    shown = [(input_label, _displayable(inputs))]
    shown += [(str(label), _displayable(images)) for label, images in columns]
    for label, images in shown[1:]:
        if images.shape != shown[0][1].shape:
            raise ValueError(f"column {label!r} has shape {images.shape}, inputs {shown[0][1].shape}")
    n = len(shown[0][1])
    fig, axes = _image_axes(n, len(shown), cell_inches, title_inches=fontsize / 72 * 2.2)
    for col, (label, images) in enumerate(shown):
        axes[0, col].set_title(label, fontsize=fontsize, pad=2)
        for row in range(n):
            _show(axes[row, col], images[row])
    return fig
