"""Similarity heatmaps drawn from the aggregated long-format table.

Layer order comes from `vaetransfer.layers` (the architecture of each axis); each cell is the mean over the seed
pairs present (reference.md §5.6). Style follows the authors' heatmaps: seaborn's default
"rocket" colormap on a fixed [0, 1] scale, no annotations, rows = model x layers top to bottom.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from vaetransfer.io import atomic_path  # noqa: E402
from vaetransfer.layers import layer_names  # noqa: E402


class EmptySelection(LookupError):
    """The table holds no rows for the requested figure."""


def layer_matrix(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean score per (layer_x, layer_y) over seed pairs, rows and columns in the layer order of
    the x and y architectures (16 x 16 for two conv VAEs). ``rows`` must hold one architecture
    per side."""
    order = {}
    for side in ("x", "y"):
        found = rows[f"architecture_{side}"].unique()
        if len(found) != 1:
            raise ValueError(f"rows mix architectures on side {side}: {sorted(found)}")
        order[side] = list(layer_names(found[0]))
    matrix = rows.pivot_table(index="layer_x", columns="layer_y", values="score", aggfunc="mean")
    return matrix.reindex(index=order["x"], columns=order["y"])


def select_learning_dynamics(
    table: pd.DataFrame, dataset: str, objective: str, hparam: float, metric: str,
    architecture: str = "conv",
) -> tuple[pd.DataFrame, int, int]:
    """Rows comparing the first and the final checkpoint of each seed of one model (Fig. 2).

    Returns (rows, first_step, final_step); rows are same-seed pairs (step_x=first, step_y=final).
    """
    sel = table[
        (table["family"] == "learning_dynamics")
        & (table["dataset_x"] == dataset)
        & (table["architecture_x"] == architecture)
        & (table["objective_x"] == objective)
        & (table["hparam_x"] == float(hparam))
        & (table["metric"] == metric)
        & (table["seed_x"] == table["seed_y"])
    ]
    if sel.empty:
        raise EmptySelection(
            f"no learning_dynamics rows for dataset={dataset!r}, architecture={architecture!r}, objective={objective!r}, "
            f"hparam={hparam}, metric={metric!r}"
        )
    first, final = int(sel["step_x"].min()), int(sel["step_y"].max())
    sel = sel[(sel["step_x"] == first) & (sel["step_y"] == final)]
    return sel, first, final


def select_cross_domain(
    table: pd.DataFrame, source: str, target: str, metric: str, family: str = "cross_domain"
) -> pd.DataFrame:
    """Rows comparing the source-trained (x) and target-trained (y) VAE on target data (Fig. 5a);
    with ``family="retrained_latents"``, the source VAE whose latent layers were retrained on the
    target (x) against the target-trained one (Fig. 5b)."""
    source_column = "source_dataset_x" if family == "retrained_latents" else "dataset_x"
    sel = table[
        (table["family"] == family)
        & (table[source_column] == source)
        & (table["dataset_y"] == target)
        & (table["eval_dataset_x"] == target)
        & (table["eval_dataset_y"] == target)
        & (table["metric"] == metric)
    ]
    if sel.empty:
        raise EmptySelection(
            f"no {family} rows for source={source!r}, target={target!r}, metric={metric!r}"
        )
    return sel


def heatmap(matrix: pd.DataFrame, ylabel: str, xlabel: str, title: str | None = None):
    """Draw one layer-by-layer heatmap; returns the matplotlib Figure."""
    sns.set_theme(style="white", font_scale=1.1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    sns.heatmap(
        matrix, vmin=0, vmax=1, square=True, ax=ax, xticklabels=True, yticklabels=True,
        cbar_kws={"shrink": 0.8},
    )
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def save_figure(fig, *paths: str | os.PathLike) -> None:
    """Save `fig` to each path (format from the suffix), atomically, then close it."""
    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=300, format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
