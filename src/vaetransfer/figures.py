"""The paper's figures as functions of the aggregated similarity table and the figure's config entry.

:data:`FIGURES` is the registry of heatmap figures: its keys are the figure names of config
``figures:``, the ``{fig}`` wildcard and the file names ``results/figures/<name>.{png,pdf}``
(the keys of :data:`vaetransfer.panels.FIGURE_KINDS`). Every entry is
``f(table, spec) -> matplotlib Figure``: ``table`` is the concatenation of the aggregated block
tables its panels read (long format, :data:`vaetransfer.scoring.TABLE_COLUMNS`), ``spec`` the raw
config entry, parsed with :func:`vaetransfer.panels.figure_panels`.

:data:`LOSS_FIGURES` holds the figure drawn from the aggregated loss curves instead
(``appJ``: ``f(loss_table, spec)``, see :mod:`vaetransfer.losscurves`).

Drawing conventions (reference.md §5.6): one heatmap per panel, wrapped after 3 per row, "rocket"
on [0, 1], one colourbar, rows = model-x layers and columns = model-y layers in library order,
each cell the mean over the seed pairs present.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping

import pandas as pd

from vaetransfer import losscurves
from vaetransfer.panels import EmptySelection, Model, Panel, figure_panels
from vaetransfer.plan import format_hparam
from vaetransfer.plotting import HeatmapSpec, draw_heatmaps, grid_axes, heatmap_grid, layer_matrix, seed_pairs

METRIC_LABELS = {"cka": "CKA", "procrustes": "Procrustes similarity"}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


# ----------------------------------------------------------------------------- one panel


def model_label(model: Model, rows: pd.DataFrame, side: str) -> str:
    """``[<arch> ]<objective>, <hparam name>=<value>`` (the authors' axis label), the name read
    from the rows' ``hparam_name_<side>``."""
    names = rows[f"hparam_name_{side}"].dropna().unique()
    if len(names) != 1 or not names[0]:
        return model.label
    arch = "" if model.architecture == "conv" else f"{model.architecture} "
    return f"{arch}{model.objective}, {names[0]}={format_hparam(model.hparam)}"


def _only(rows: pd.DataFrame, column: str) -> int:
    values = rows[column].unique()
    if len(values) != 1:
        raise ValueError(f"expected one {column} in the selection, found {sorted(values)}")
    return int(values[0])


def panel_labels(panel: Panel, rows: pd.DataFrame) -> tuple[str, str]:
    """(ylabel, xlabel): the model (or dataset) on the rows, then on the columns, of a panel."""
    if panel.kind == "dynamics":
        label = model_label(panel.x, rows, "x")
        return f"{label}, step={_only(rows, 'step_x')}", f"{label}, step={_only(rows, 'step_y')}"
    if panel.kind in ("models", "classifier"):
        return model_label(panel.x, rows, "x"), model_label(panel.y, rows, "y")
    if panel.kind == "cross_domain":
        return f"VAE trained on {panel.source}", f"VAE trained on {panel.target}"
    return (f"VAE trained on {panel.source}, mean/log_var retrained on {panel.target}",
            f"VAE trained on {panel.target}")


def panel_title(panel: Panel, rows: pd.DataFrame, metric: str) -> str:
    """The panel's config ``title``, else "<metric> on <data> (mean of N seed pairs)"."""
    if panel.title:
        return panel.title
    data = panel.dataset if panel.dataset is not None else f"{panel.target} data"
    return f"{metric_label(metric)} on {data} (mean of {seed_pairs(rows)} seed pairs)"


def rows_heatmap(panel: Panel, rows: pd.DataFrame, metric: str) -> HeatmapSpec:
    """The seed-averaged layer matrix of already selected rows, with the panel's texts."""
    ylabel, xlabel = panel_labels(panel, rows)
    return HeatmapSpec(layer_matrix(rows), ylabel, xlabel, panel_title(panel, rows, metric))


def panel_heatmap(table: pd.DataFrame, panel: Panel, metric: str | None = None) -> HeatmapSpec:
    """One panel's heatmap (`metric` defaults to the panel's); EmptySelection names the panel."""
    metric = metric or panel.metric
    return rows_heatmap(panel, panel.select(table, metric), metric)


def _panels_figure(name: str, table: pd.DataFrame, spec: Mapping[str, Any]):
    """One heatmap per panel of figure `name`, wrapped after 3 per row, one colourbar."""
    return heatmap_grid([panel_heatmap(table, p) for p in figure_panels(name, spec)])


# ----------------------------------------------------------------------------- heatmap figures


def fig2(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Fig. 2, learning dynamics: each ``dynamics`` panel compares a model's first (rows) and final
    (columns) checkpoints (or ``step_x``/``step_y``), mean over same-seed pairs."""
    return _panels_figure("fig2", table, spec)


def fig3(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Fig. 3, posterior collapse: a collapsed model x (rows, e.g. a large-β β-VAE) against another
    model y (columns) on the same data, final checkpoints (``models`` panels), mean over seed pairs."""
    return _panels_figure("fig3", table, spec)


def fig4(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Fig. 4, encoders across objectives: ``models`` panels, two trained configurations (x rows,
    y columns) on the same data, final checkpoints, mean over seed pairs."""
    return _panels_figure("fig4", table, spec)


def fig5a(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Fig. 5a, cross-domain: the source-trained (rows) vs the target-trained vanilla VAE (columns),
    both on target data (``cross_domain`` panels), mean over seed pairs."""
    return _panels_figure("fig5a", table, spec)


def fig5b(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Fig. 5b: the source VAE after retraining its latent layers on the target (rows) vs the
    target-trained VAE (columns), both on target data (``retrained_latents`` panels)."""
    return _panels_figure("fig5b", table, spec)


def appG(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Appendix G, the fully-connected VAE: panels of any kind, typically ``dynamics`` or ``models``
    with ``architecture: fc`` (11 layers per fc axis)."""
    return _panels_figure("appG", table, spec)


def appH(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Appendix H, classifier vs vanilla VAE: the vanilla conv VAE (rows, 16 layers) against the
    supervised classifier (columns, 7 layers) of the same dataset (``classifier`` panels)."""
    return _panels_figure("appH", table, spec)


def appF(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Appendix F, Procrustes vs CKA on the same pairs: per panel one row of the CKA heatmap, the
    Procrustes heatmap (``spec['metrics']``, default ``[cka, procrustes]``) and a scatter of the
    second metric against the first over every layer-pair cell, Pearson and Spearman in its title."""
    metrics = list(spec.get("metrics", ["cka", "procrustes"]))
    if len(metrics) != 2:
        raise ValueError(f"figures.appF.metrics: expected two metrics, got {metrics}")
    panels = figure_panels("appF", spec)
    fig, axes = grid_axes(3 * len(panels), ncols=3)
    heat_axes, specs = [], []
    for i, panel in enumerate(panels):
        pair = [panel_heatmap(table, panel, m) for m in metrics]
        specs.extend(pair)
        heat_axes.extend(axes[3 * i:3 * i + 2])
        metric_scatter(axes[3 * i + 2], pair[0].matrix, pair[1].matrix, metrics)
    draw_heatmaps(heat_axes, specs)
    return fig


def cell_pairs(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Columns ``a``, ``b``: the two matrices' values at each layer-pair cell where both are finite,
    cells in row-major matrix order (the matrices must have the same index and columns)."""
    if not (a.index.equals(b.index) and a.columns.equals(b.columns)):
        raise ValueError("the two metrics' matrices cover different layers")
    cells = pd.DataFrame({"a": a.to_numpy(dtype="float64").ravel(), "b": b.to_numpy(dtype="float64").ravel()})
    return cells.dropna().reset_index(drop=True)


def correlations(cells: pd.DataFrame) -> dict[str, float]:
    """Pearson and Spearman correlation of ``cells.a`` and ``cells.b`` (float64)."""
    return {method: float(cells["a"].corr(cells["b"], method=method)) for method in ("pearson", "spearman")}


def metric_scatter(ax, a: pd.DataFrame, b: pd.DataFrame, metrics: list[str]) -> dict[str, float]:
    """Scatter metric b against metric a over the layer-pair cells; returns the correlations."""
    cells = cell_pairs(a, b)
    corr = correlations(cells)
    ax.plot([0, 1], [0, 1], color="0.8", linewidth=1, zorder=0)  # y = x: where the metrics agree
    ax.scatter(cells["a"], cells["b"], s=12)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=metric_label(metrics[0]), ylabel=metric_label(metrics[1]),
           title=f"Pearson r = {corr['pearson']:.3f}, Spearman ρ = {corr['spearman']:.3f}")
    ax.set_box_aspect(1)
    return corr


def checkpoint_heatmaps(table: pd.DataFrame, panel: Panel) -> list[HeatmapSpec]:
    """One heatmap per checkpoint before the final one (``step_y``) of a ``dynamics`` panel, each
    against the final checkpoint, same-seed pairs, in step order (``step_x='all'``)."""
    rows = replace(panel, step_x="all").select(table)
    final = _only(rows, "step_y")
    earlier = sorted(int(s) for s in rows["step_x"].unique() if s < final)
    if not earlier:
        raise EmptySelection(f"no checkpoint before step {final} for panel {panel.describe()}")
    return [rows_heatmap(panel, rows[rows["step_x"] == s], panel.metric) for s in earlier]


def appI(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Appendix I, several epochs: for each ``dynamics`` panel, every earlier checkpoint (rows)
    against the final one (columns), one heatmap each, mean over same-seed pairs (the spec's
    ``step_x`` is ignored; other panel kinds are drawn as one heatmap)."""
    specs = []
    for panel in figure_panels("appI", spec):
        if panel.kind == "dynamics":
            specs.extend(checkpoint_heatmaps(table, panel))
        else:
            specs.append(panel_heatmap(table, panel))
    return heatmap_grid(specs)


FIGURES: dict[str, Callable] = {
    "fig2": fig2, "fig3": fig3, "fig4": fig4, "fig5a": fig5a, "fig5b": fig5b,
    "appF": appF, "appG": appG, "appH": appH, "appI": appI,
}


# ----------------------------------------------------------------------------- loss curves


def appJ(table: pd.DataFrame, spec: Mapping[str, Any]):
    """Appendix J, convergence curves of every objective: the training loss over steps, one subplot
    per (dataset, architecture), one line per (objective, hyper-parameter) = mean over seeds with a
    min-max band. ``table``: :func:`vaetransfer.losscurves.aggregate` output; ``spec``: the config
    entry (``datasets``: which to show, default all in the table; ``term``: which logged term,
    default ``loss``, e.g. ``kl`` or ``reconstruction``)."""
    return losscurves.plot(table, spec.get("datasets"), term=spec.get("term", "loss"))


#: Figures drawn from the aggregated loss-curve table (``results/tables/losses*.parquet``).
LOSS_FIGURES: dict[str, Callable] = {"appJ": appJ}
