"""Convergence curves (paper Appendix J): per-step loss logs reduced to windows, then plotted.

A run's loss log (:mod:`vaetransfer.losslog`) has one row per optimiser step: ``step``, the
objective's logged terms (:func:`vaetransfer.objectives.logged_terms`: loss, reconstruction, kl,
elbo and the objective's extras) and ``kl_0 … kl_9``; a classifier run logs ``loss``,
``ce_<factor>`` and ``accuracy_<factor>`` (:func:`vaetransfer.classify.classifier_columns`).
300k steps per run times hundreds of runs is too much to plot, so :func:`aggregate` keeps at most
``points`` window means per run, in long format (identity + step + term + value).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from vaetransfer.panels import EmptySelection
from vaetransfer.plan import format_hparam
from vaetransfer.plotting import grid_axes

#: Identity keys every run dict carries (copied to the table, never parsed from paths).
IDENTITY = ("dataset", "architecture", "objective", "hparam", "seed")
COLUMNS = [*IDENTITY, "step", "term", "value"]


def windows(n: int, points: int) -> np.ndarray:
    """Start index of each window of consecutive rows: ``ceil(n / points)`` rows per window
    (the last may be shorter), so there are at most ``points`` windows. (k,) int64."""
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    size = max(1, math.ceil(n / points))
    return np.arange(0, n, size, dtype=np.int64)


def reduce_log(log: pd.DataFrame, points: int) -> pd.DataFrame:
    """Window means of every numeric term of one loss log, wide: ``step`` (each window's last
    step) then one column per term. Rows are sorted by step first (a resumed run appends)."""
    if "step" not in log.columns:
        raise ValueError(f"a loss log needs a 'step' column, got {list(log.columns)}")
    log = log.sort_values("step", kind="stable")
    terms = [c for c in log.columns if c != "step" and pd.api.types.is_numeric_dtype(log[c])]
    n = len(log)
    if n == 0:
        return pd.DataFrame(columns=["step", *terms])
    starts = windows(n, points)
    counts = np.diff(np.append(starts, n))
    values = log[terms].to_numpy(dtype="float64")
    # reduceat sums each [start, next start) block; dividing by its length gives the window mean.
    means = np.add.reduceat(values, starts, axis=0) / counts[:, None]
    out = pd.DataFrame(means, columns=terms)
    out.insert(0, "step", log["step"].to_numpy(dtype="int64")[starts + counts - 1])
    return out


def _identity(run: Mapping) -> dict:
    if missing := [k for k in (*IDENTITY, "losses") if k not in run]:
        raise KeyError(f"loss-curve run {dict(run)!r} lacks key(s) {missing}")
    return {"dataset": str(run["dataset"]), "architecture": str(run["architecture"]),
            "objective": str(run["objective"]), "hparam": float(run["hparam"]), "seed": int(run["seed"])}


def aggregate(runs: Iterable[Mapping], points: int = 500) -> pd.DataFrame:
    """One long table of every run's windowed loss curves.

    runs: dicts with the :data:`IDENTITY` keys (dataset, architecture, objective, hparam, seed) and
    ``losses``, the path of the run's loss-log Parquet. Each run is reduced by :func:`reduce_log`
    to at most ``points`` windows. Returns columns :data:`COLUMNS`, one row per (run, window,
    term); identity comes from the dicts, never from the paths.
    """
    frames = []
    for run in runs:
        ids = _identity(run)
        wide = reduce_log(pd.read_parquet(run["losses"]), points)
        long = wide.melt(id_vars="step", var_name="term", value_name="value")
        frames.append(long.assign(**ids))
    if not frames:
        return _typed(pd.DataFrame(columns=COLUMNS))
    return _typed(pd.concat(frames, ignore_index=True)[COLUMNS])


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    return table.astype({"dataset": str, "architecture": str, "objective": str, "hparam": "float64",
                         "seed": "int64", "step": "int64", "term": str, "value": "float64"})


def seed_band(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max over seeds at each step of one (objective, hparam): columns step, mean,
    min, max, sorted by step."""
    stats = rows.groupby("step")["value"].agg(["mean", "min", "max"])
    return stats.reset_index().sort_values("step")


def plot(table: pd.DataFrame, datasets: Sequence[str] | None = None, term: str = "loss"):
    """Convergence curves of `term`: one subplot per (dataset, architecture), one line per
    (objective, hparam) = mean over seeds, shaded between the seeds' min and max; log-scale y when
    every value of the subplot is positive. `datasets` selects and orders the datasets (default:
    all in the table, sorted). Returns the matplotlib Figure; EmptySelection if nothing matches."""
    rows = table[table["term"] == term]
    if datasets is not None:
        rows = rows[rows["dataset"].isin(list(datasets))]
    if rows.empty:
        raise EmptySelection(f"no loss-curve rows for term {term!r} and datasets {datasets!r}")
    order = list(datasets) if datasets is not None else sorted(rows["dataset"].unique())
    groups = sorted({(d, a) for d, a in zip(rows["dataset"], rows["architecture"])},
                    key=lambda k: (order.index(k[0]) if k[0] in order else len(order), k))
    fig, axes = grid_axes(len(groups), ncols=3, size=(6.0, 4.5))
    for ax, (dataset, architecture) in zip(axes, groups):
        sub = rows[(rows["dataset"] == dataset) & (rows["architecture"] == architecture)]
        for (objective, hparam), run_rows in sub.groupby(["objective", "hparam"], sort=True):
            band = seed_band(run_rows)
            (line,) = ax.plot(band["step"], band["mean"], label=f"{objective}, {format_hparam(hparam)}")
            ax.fill_between(band["step"], band["min"], band["max"], color=line.get_color(), alpha=0.2,
                            linewidth=0)
        if (sub["value"] > 0).all():
            ax.set_yscale("log")
        ax.set(title=f"{dataset}, {architecture}", xlabel="step", ylabel=term)
        ax.legend(fontsize="small")
    fig.set_layout_engine("constrained")
    return fig
