"""Similarity heatmaps drawn from the aggregated long-format table.

Layer order comes from `vaetransfer.layers` (the architecture of each axis); each cell is the mean
over the seed pairs present (reference.md §5.6). Style follows the authors' heatmaps: seaborn's
default "rocket" colormap on a fixed [0, 1] scale, no annotations, rows = model x layers top to
bottom, columns = model y layers. A figure of several heatmaps (:func:`heatmap_grid`) shares one
colourbar, which is valid because every heatmap uses the same colormap and limits.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from vaetransfer.io import atomic_path  # noqa: E402
from vaetransfer.layers import layer_names  # noqa: E402
from vaetransfer.panels import EmptySelection, Panel  # noqa: E402,F401  (EmptySelection re-exported)

#: Heatmap colour scale (reference.md §5.6: ``sns.heatmap(df.T, vmin=0, vmax=1)``).
VMIN, VMAX = 0.0, 1.0
#: Heatmaps per row of a multi-panel figure.
NCOLS = 3
#: Size of one heatmap cell of the grid (inches); one panel keeps the single-figure size.
PANEL_SIZE = (7.5, 6.5)
#: `Axes.get_label()` of every heatmap axes, so tests and callers can tell them from colourbars.
HEATMAP_LABEL = "heatmap"


@dataclass(frozen=True)
class HeatmapSpec:
    """One heatmap to draw: the (rows x columns) layer matrix and its texts."""

    matrix: pd.DataFrame
    ylabel: str
    xlabel: str
    title: str | None = None


def layer_matrix(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean score per (layer_x, layer_y) over seed pairs, rows and columns in the layer order of
    the x and y architectures (16 x 16 for two conv VAEs, 16 x 7 for a VAE vs the classifier).
    ``rows`` must hold one architecture per side."""
    order = {}
    for side in ("x", "y"):
        found = rows[f"architecture_{side}"].unique()
        if len(found) != 1:
            raise ValueError(f"rows mix architectures on side {side}: {sorted(found)}")
        order[side] = list(layer_names(found[0]))
    matrix = rows.pivot_table(index="layer_x", columns="layer_y", values="score", aggfunc="mean")
    return matrix.reindex(index=order["x"], columns=order["y"])


def select_cross_domain(
    table: pd.DataFrame, source: str, target: str, metric: str, family: str = "cross_domain"
) -> pd.DataFrame:
    """Rows comparing the source-trained (x) and target-trained (y) VAE on target data (Fig. 5a);
    with ``family="retrained_latents"``, the source VAE whose latent layers were retrained on the
    target (x) against the target-trained one (Fig. 5b). EmptySelection names source, target and
    metric when there are none (selection: :meth:`vaetransfer.panels.Panel.select`)."""
    if family not in ("cross_domain", "retrained_latents"):
        raise ValueError(f"family must be cross_domain or retrained_latents, got {family!r}")
    try:
        return Panel(kind=family, metric=metric, source=source, target=target).select(table)
    except EmptySelection:
        raise EmptySelection(f"no {family} rows for source={source!r}, target={target!r}, "
                             f"metric={metric!r}") from None


def seed_pairs(rows: pd.DataFrame) -> int:
    """The number of distinct (seed_x, seed_y) pairs a selection averages over."""
    return len(rows[["seed_x", "seed_y"]].drop_duplicates())


def _draw(ax, spec: HeatmapSpec) -> None:
    """One heatmap on `ax` without its own colourbar (the figure has one)."""
    sns.heatmap(spec.matrix, vmin=VMIN, vmax=VMAX, square=True, ax=ax, cbar=False,
                xticklabels=True, yticklabels=True)
    # Padding: the long "sampled" tick label otherwise touches the rotated axis label.
    ax.set_ylabel(spec.ylabel, labelpad=10)
    ax.set_xlabel(spec.xlabel, labelpad=6)
    if spec.title:
        ax.set_title(spec.title)
    ax.set_label(HEATMAP_LABEL)


def grid_axes(n: int, ncols: int = NCOLS, size: tuple[float, float] = PANEL_SIZE):
    """(fig, axes): `n` axes in rows of `ncols`, row-major; unused cells of the last row removed.
    No layout engine yet: :func:`draw_heatmaps` (or the caller) sets constrained layout once
    everything is drawn (seaborn draws the whole figure once per heatmap, and a layout engine
    would re-run at each of those draws)."""
    sns.set_theme(style="white", font_scale=1.1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def draw_heatmaps(axes: Sequence, specs: Sequence[HeatmapSpec]) -> None:
    """Draw ``specs[i]`` on ``axes[i]``, switch the figure to constrained layout (the shared
    colourbar and long axis labels never overlap) and add the one colourbar (VMIN..VMAX)."""
    for ax, spec in zip(axes, specs):
        _draw(ax, spec)
    if specs:
        fig = axes[0].figure
        fig.set_layout_engine("constrained")
        fig.colorbar(axes[0].collections[0], ax=list(axes), shrink=0.8)


def heatmap_grid(specs: Sequence[HeatmapSpec], ncols: int = NCOLS):
    """One figure of heatmaps, `ncols` per row, one colourbar; returns the matplotlib Figure."""
    if not specs:
        raise ValueError("no heatmap to draw")
    fig, axes = grid_axes(len(specs), ncols)
    draw_heatmaps(axes, specs)
    return fig


def heatmap(matrix: pd.DataFrame, ylabel: str, xlabel: str, title: str | None = None):
    """Draw one layer-by-layer heatmap; returns the matplotlib Figure."""
    return heatmap_grid([HeatmapSpec(matrix, ylabel, xlabel, title)])


def heatmap_axes(fig) -> list:
    """The heatmap axes of a figure drawn here, in drawing order (colourbars and scatters left out)."""
    return [ax for ax in fig.axes if ax.get_label() == HEATMAP_LABEL]


def save_figure(fig, *paths: str | os.PathLike, dpi: int = 300) -> None:
    """Save `fig` to each path (format from the suffix), atomically, then close it (dpi 300 as
    the authors' figures; tests pass less)."""
    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
