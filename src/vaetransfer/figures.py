"""The paper's figures as functions of the similarity table and the figure's config entry.

`FIGURES` is the registry: its keys are the figure names of config `figures:`, the `{fig}`
wildcard and the file names `results/figures/<name>.{png,pdf}`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import pandas as pd

from vaetransfer.plan import format_hparam
from vaetransfer.plotting import heatmap, layer_matrix, select_cross_domain, select_learning_dynamics

METRIC_LABELS = {"cka": "CKA", "procrustes": "Procrustes similarity"}


def fig2(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Fig. 2: learning dynamics, first vs final checkpoint of one model, averaged over seeds."""
    metric = spec.get("metric", "cka")
    rows, first, final = select_learning_dynamics(
        table, spec["dataset"], spec["objective"], spec["hparam"], metric, spec.get("architecture", "conv")
    )
    model = f"{spec['objective']}, {rows['hparam_name_x'].iloc[0]}={format_hparam(spec['hparam'])}"
    n_seeds = rows["seed_x"].nunique()
    return heatmap(
        layer_matrix(rows),
        ylabel=f"{model}, step={first}",
        xlabel=f"{model}, step={final}",
        title=f"{METRIC_LABELS[metric]} on {spec['dataset']} (mean of {n_seeds} seeds)",
    )


def _transfer_heatmap(table: pd.DataFrame, spec: Mapping[str, Any], family: str, source_label: str):
    """A (source-side model) x (target-trained VAE) heatmap on target data, mean over seed pairs."""
    metric = spec.get("metric", "cka")
    rows = select_cross_domain(table, spec["source"], spec["target"], metric, family=family)
    n_pairs = len(rows[["seed_x", "seed_y"]].drop_duplicates())
    return heatmap(
        layer_matrix(rows),
        ylabel=source_label,
        xlabel=f"VAE trained on {spec['target']}",
        title=f"{METRIC_LABELS[metric]} on {spec['target']} data (mean of {n_pairs} seed pairs)",
    )


def fig5a(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Fig. 5a: source-trained vs target-trained vanilla VAE, both on target data."""
    return _transfer_heatmap(table, spec, "cross_domain", f"VAE trained on {spec['source']}")


def fig5b(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Fig. 5b: the source VAE after retraining its latent layers on the target vs the target-trained
    VAE, both on target data (family ``retrained_latents``, needs the ``transfer`` config)."""
    label = f"VAE trained on {spec['source']}, mean/log_var retrained on {spec['target']}"
    return _transfer_heatmap(table, spec, "retrained_latents", label)


FIGURES: dict[str, Callable] = {"fig2": fig2, "fig5a": fig5a, "fig5b": fig5b}
