"""The paper's claims as checkable statements: what this run measured and whether it supports them.

:func:`evaluate` turns the aggregated similarity table (Figs. 2-5), the progressive-unfreezing losses
(Fig. 6 / Appendix B) and Table 1 into one row per (claim, panel or pair): the statement in the paper's
terms, the measured numbers, the main quantity (``value``), the bar it is held to (``threshold``) and
``supported`` (pandas ``boolean``; NA when the claim could not be checked, ``measured`` saying why).
Every claim id of :data:`CLAIMS` appears at least once, so what was *not* checked shows too.

Heatmap cells are seed-pair means (:func:`vaetransfer.plotting.layer_matrix`); the blocks are those of
:func:`vaetransfer.report.blocks`: *encoder* = e/k + mean, log_var, sampled, *trunk* = e/k, *latent* =
mean, log_var, sampled, *decoder* = d/k; ``input`` is always left out; NaN cells are skipped.

Claims and the default bars (:class:`Thresholds`; judgement calls for CKA on n = 5,000 examples, not
fitted values; the similarity thresholds are applied whatever the panel's metric, so re-judge them for
Procrustes):

1. ``encoders_learned_first`` (Fig. 2, and the dynamics panels of Appendices G and I): at every checkpoint
   before the final one, the encoder/encoder quadrant mean against the final checkpoint (same-seed pairs)
   is >= the decoder/decoder one. value = the smallest (encoder - decoder) margin over checkpoints; bar 0.
2. ``collapsed_sampled_dissimilar`` (Fig. 3; x = the collapsed model): the collapsed model's ``sampled``
   row never exceeds 0.3: CKA of unrelated representations sits around 0.1-0.2 at this sample size and the
   paper's "dark" cells are below ~0.3, while genuinely shared structure reaches 0.5+.
3. ``encoders_similar_across_objectives`` (Fig. 4): trunk diagonal >= 0.6 (clearly above mid-scale, the
   "bright" encoder block) and >= the decoder diagonal.
4. ``encoders_generic_decoders_specific`` (Fig. 5a): trunk diagonal - decoder diagonal >= 0.05, a gap
   larger than the seed-to-seed spread of a diagonal mean (a few hundredths) so noise alone cannot pass.
5. ``retrained_latents_align`` (Fig. 5b vs the cross-domain rows of the same pair): latent diagonal after
   retraining mean/log_var minus before >= 0 (the paper only claims an increase).
6. ``more_decoder_layers_lower_loss`` (Fig. 6 innermost first, Appendix B outermost first): Spearman rho
   between decoder layers retrained (level 0 = the source model, or the latents-only model when latents
   are retrained) and held-out loss <= -0.5 (a clear monotone trend over 7 single-seed levels without
   demanding strict monotonicity), and the largest level's loss below level 0's.
7. ``table1_target_encoder_best`` (Table 1): target-trained minus source-trained test accuracy >= -0.02:
   test splits of thousands of examples make sampling noise < 0.01; 0.02 also absorbs classifier noise.
"""

from __future__ import annotations

import dataclasses
import html
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from vaetransfer import panels
from vaetransfer.plotting import layer_matrix
from vaetransfer.report import blocks, quadrant_summary

COLUMNS = ("claim", "figure", "subject", "metric", "statement", "measured", "value", "threshold", "supported")


@dataclass(frozen=True)
class Thresholds:
    """The bars of the claims (module docstring explains each default).

    learned_first_margin: smallest encoder - decoder quadrant margin per checkpoint (claim 1).
    collapsed_max: largest score of the collapsed model's ``sampled`` layer with any layer (claim 2).
    encoder_similar: smallest trunk diagonal across objectives (claim 3).
    generic_margin: smallest trunk - decoder diagonal gap across domains (claim 4).
    latent_gain: smallest latent-diagonal gain from retraining mean/log_var (claim 5).
    unfreezing_rho: largest Spearman rho between decoder layers retrained and loss (claim 6).
    accuracy_tolerance: largest accuracy deficit of the target-trained encoder (claim 7).
    """
    learned_first_margin: float = 0.0
    collapsed_max: float = 0.3
    encoder_similar: float = 0.6
    generic_margin: float = 0.05
    latent_gain: float = 0.0
    unfreezing_rho: float = -0.5
    accuracy_tolerance: float = 0.02


#: claim id -> (figures it reads, statement template formatted with the Thresholds fields).
CLAIMS: dict[str, tuple[tuple[str, ...], str]] = {
    "encoders_learned_first": (("fig2", "appG", "appI"), (
        "Encoders are learned before decoders: at every checkpoint before the final one, the encoder layers "
        "are closer to their final state than the decoder layers (encoder - decoder quadrant mean >= "
        "{learned_first_margin:g}).")),
    "collapsed_sampled_dissimilar": (("fig3",), (
        "The sampled representation of the collapsed model (x) is dissimilar to every layer of the other "
        "model (max score of its row <= {collapsed_max:g}).")),
    "encoders_similar_across_objectives": (("fig4",), (
        "Encoders of models trained with different objectives are similar (mean e/k diagonal >= "
        "{encoder_similar:g} and >= the decoder diagonal).")),
    "encoders_generic_decoders_specific": (("fig5a",), (
        "Across domains the encoder is generic and the decoder domain-specific (e/k diagonal exceeds the "
        "decoder diagonal by >= {generic_margin:g}).")),
    "retrained_latents_align": (("fig5b",), (
        "Retraining the mean and log-variance layers on the target brings the latent representations closer "
        "to the target-trained VAE (latent diagonal gain >= {latent_gain:g}).")),
    "more_decoder_layers_lower_loss": (("fig6", "appB"), (
        "Retraining more decoder layers lowers the held-out reconstruction loss on the target (Spearman rho "
        "of layers retrained vs loss <= {unfreezing_rho:g}, and the most retrained model beats level 0).")),
    "table1_target_encoder_best": (("table1",), (
        "The target-trained encoder classifies its own data at least as well as the source-trained one "
        "(test accuracy difference >= -{accuracy_tolerance:g}).")),
}


class _NotEvaluable(LookupError):
    """The claim cannot be checked on this subject; the message says why."""


def _row(claim: str, t: Thresholds, threshold: float, figure: str, subject: str, metric: str = "",
         measured: str = "", value: float = math.nan, supported: Any = pd.NA) -> dict:
    return {"claim": claim, "figure": figure, "subject": subject, "metric": metric,
            "statement": CLAIMS[claim][1].format(**dataclasses.asdict(t)), "measured": measured,
            "value": float(value), "threshold": float(threshold), "supported": supported}


def _verdict(ok: bool, value: float) -> Any:
    return pd.NA if isinstance(value, float) and math.isnan(value) else bool(ok)


def _matrix(panel: panels.Panel, similarity: pd.DataFrame | None) -> pd.DataFrame:
    if similarity is None:
        raise _NotEvaluable("no similarity table was given")
    try:
        return layer_matrix(panel.select(similarity))
    except (panels.EmptySelection, ValueError) as err:
        raise _NotEvaluable(str(err)) from None


def _f(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.3f}"


# ----------------------------------------------------------------------------- similarity claims


def _learned_first(panel, similarity, t):
    """Fig. 2: per checkpoint step_x < final, encoder/encoder vs decoder/decoder quadrant means."""
    if similarity is None:
        raise _NotEvaluable("no similarity table was given")
    try:
        rows = dataclasses.replace(panel, step_x="all").select(similarity)
    except panels.EmptySelection as err:
        raise _NotEvaluable(str(err)) from None
    final = int(rows["step_y"].max())
    steps = []
    for step, group in rows[rows["step_x"] < final].groupby("step_x"):
        q = quadrant_summary(layer_matrix(group))
        steps.append((int(step), q["encoder/encoder"], q["decoder/decoder"]))
    if not steps:
        raise _NotEvaluable(f"only the final checkpoint (step {final}) was scored")
    value = min(e - d for _, e, d in steps)
    measured = "; ".join(f"step {s}: encoder {_f(e)} vs decoder {_f(d)}" for s, e, d in steps)
    return f"{measured} (vs step {final})", value, value >= t.learned_first_margin


def _collapsed(panel, similarity, t):
    """Fig. 3: max over the other model's layers of the collapsed model's ``sampled`` row."""
    m = _matrix(panel, similarity)
    if "sampled" not in m.index:
        raise _NotEvaluable(f"x ({panel.x.label}) has no sampled layer")
    row = m.loc["sampled"].dropna()
    value = float(row.max()) if len(row) else math.nan
    others = [n for n in blocks(m.index)["encoder"] if n != "sampled"]
    contrast = m.loc[others]
    measured = (f"sampled row max {_f(value)} (at {row.idxmax() if len(row) else '-'}); other encoder rows "
                f"({', '.join(others)}): mean {_f(float(np.nanmean(contrast.to_numpy())))}, mean row max "
                f"{_f(float(contrast.max(axis=1).mean()))}")
    return measured, value, value <= t.collapsed_max


def _similar_encoders(panel, similarity, t):
    """Fig. 4: trunk diagonal >= bar and >= decoder diagonal."""
    q = quadrant_summary(_matrix(panel, similarity))
    trunk, decoder = q["trunk diagonal"], q["decoder diagonal"]
    measured = f"e/k diagonal {_f(trunk)}, decoder diagonal {_f(decoder)}"
    return measured, trunk, trunk >= t.encoder_similar and trunk >= decoder


def _generic(panel, similarity, t):
    """Fig. 5a: trunk diagonal - decoder diagonal >= margin."""
    q = quadrant_summary(_matrix(panel, similarity))
    value = q["trunk diagonal"] - q["decoder diagonal"]
    measured = f"e/k diagonal {_f(q['trunk diagonal'])} - decoder diagonal {_f(q['decoder diagonal'])} = {_f(value)}"
    return measured, value, value >= t.generic_margin


def _latent_diagonal(m: pd.DataFrame) -> tuple[float, str]:
    layers = [n for n in blocks(m.index)["latent"] if n in m.columns]
    values = {n: float(m.loc[n, n]) for n in layers}
    finite = [v for v in values.values() if not math.isnan(v)]
    detail = ", ".join(f"{n} {_f(v)}" for n, v in values.items())
    return (float(np.mean(finite)) if finite else math.nan), detail


def _retrained(panel, similarity, t):
    """Fig. 5b vs the cross_domain rows of the same pair: latent diagonal gain."""
    after, after_detail = _latent_diagonal(_matrix(panel, similarity))
    before_panel = panels.Panel(kind="cross_domain", metric=panel.metric, source=panel.source, target=panel.target)
    before, before_detail = _latent_diagonal(_matrix(before_panel, similarity))
    value = after - before
    measured = (f"latent diagonal {_f(after)} after retraining ({after_detail}) vs {_f(before)} before "
                f"({before_detail}); gain {_f(value)}")
    return measured, value, value >= t.latent_gain


PANEL_CLAIMS: dict[str, tuple[Callable, str, str | None]] = {
    # claim -> (evaluator, Thresholds field, required panel kind)
    "encoders_learned_first": (_learned_first, "learned_first_margin", "dynamics"),
    "collapsed_sampled_dissimilar": (_collapsed, "collapsed_max", "models"),
    "encoders_similar_across_objectives": (_similar_encoders, "encoder_similar", "models"),
    "encoders_generic_decoders_specific": (_generic, "generic_margin", "cross_domain"),
    "retrained_latents_align": (_retrained, "latent_gain", "retrained_latents"),
}


def _panel_rows(claim: str, figures: Mapping[str, list], similarity, t: Thresholds) -> list[dict]:
    evaluator, field, kind = PANEL_CLAIMS[claim]
    threshold = getattr(t, field)
    rows, seen = [], set()
    for figure in CLAIMS[claim][0]:
        for panel in figures.get(figure, []):
            key = dataclasses.replace(panel, title=None, step_x="all")  # appI may repeat a fig2 panel
            if panel.kind != kind or key in seen:
                continue
            seen.add(key)
            base = dict(figure=figure, subject=panel.describe(), metric=panel.metric)
            try:
                measured, value, ok = evaluator(panel, similarity, t)
            except (_NotEvaluable, ValueError) as err:  # ValueError: e.g. a matrix without decoder layers
                rows.append(_row(claim, t, threshold, **base, measured=f"not evaluated: {err}"))
                continue
            rows.append(_row(claim, t, threshold, **base, measured=measured, value=value,
                             supported=_verdict(ok, value)))
    return rows


# ----------------------------------------------------------------------------- unfreezing (Fig. 6)


def _series(table: pd.DataFrame, order: str, latents: str) -> pd.DataFrame:
    """(level, loss) rows of one unfreezing series, with its level-0 model (source or latents-only)."""
    base = "source" if latents == "frozen" else "latents"
    levels = table[(table["order"] == order) & (table["latents"] == latents)]
    if levels.empty:
        return levels
    return pd.concat([table[table["model"] == base], levels]).sort_values("level")


def _unfreezing_rows(config, unfreezing: pd.DataFrame | None, t: Thresholds) -> list[dict]:
    """Fig. 6 (inner) / Appendix B (outer): per (order, latents) present for each configured pair."""
    claim, threshold = "more_decoder_layers_lower_loss", t.unfreezing_rho
    configured = [name for name in CLAIMS[claim][0] if name in config.get("figures", {})]
    pairs = list(dict.fromkeys(panels.pair_figure(config, name) for name in configured))
    rows = []
    for source, target, seed in pairs:
        subject = f"{source} -> {target}, seed {seed}"
        if unfreezing is None:
            rows.append(_row(claim, t, threshold, "fig6", subject, measured="not evaluated: no unfreezing table"))
            continue
        table = unfreezing
        if {"source", "target"} <= set(table.columns):
            table = table[(table["source"] == source) & (table["target"] == target)]
        if "seed" in table.columns:
            table = table[table["seed"] == seed]
        found = [(o, lat) for o in ("inner", "outer") for lat in ("frozen", "retrained")
                 if not _series(table, o, lat).empty]
        if not found:
            rows.append(_row(claim, t, threshold, "fig6", subject,
                             measured="not evaluated: no unfreezing rows for this pair"))
        for order, latents in found:
            series = _series(table, order, latents)
            figure = "fig6" if order == "inner" else "appB"
            where = f"{subject}, {order}most first, latents {latents}"
            if series["level"].nunique() < 2:
                rows.append(_row(claim, t, threshold, figure, where, measured="not evaluated: fewer than 2 levels"))
                continue
            level, loss = series["level"].astype(float), series["heldout_loss"].astype(float)
            rho = float(level.corr(loss, method="spearman"))
            first, last = float(loss.iloc[0]), float(loss.iloc[-1])
            measured = (f"rho {_f(rho)}; losses " + ", ".join(f"{int(k)}: {v:.2f}" for k, v in zip(level, loss))
                        + f"; level {int(level.iloc[-1])} {'<' if last < first else '>='} level {int(level.iloc[0])}")
            rows.append(_row(claim, t, threshold, figure, where, measured=measured, value=rho,
                             supported=_verdict(rho <= threshold and last < first, rho)))
    return rows


# ----------------------------------------------------------------------------- Table 1


def _table1_rows(table1: pd.DataFrame | None, t: Thresholds) -> list[dict]:
    """Table 1: per (source, target, seed), target-role minus source-role test accuracy."""
    claim, threshold = "table1_target_encoder_best", -t.accuracy_tolerance
    if table1 is None or table1.empty:
        return []
    own = table1[table1["role"] == "target"].groupby(["target_dataset", "seed"])["test_accuracy"].mean()
    other = table1[table1["role"] == "source"].groupby(["source_dataset", "target_dataset", "seed"])[
        "test_accuracy"].mean()
    rows = []
    for (source, target, seed), acc_source in other.items():
        subject = f"{source} -> {target}, seed {seed}"
        if (target, seed) not in own.index:
            rows.append(_row(claim, t, threshold, "table1", subject,
                             measured=f"not evaluated: no target-trained encoder row for {target}, seed {seed}"))
            continue
        acc_target = float(own.loc[(target, seed)])
        value = acc_target - float(acc_source)
        measured = (f"test accuracy {acc_target:.3f} (target-trained) vs {float(acc_source):.3f} "
                    f"({source}-trained): difference {value:+.3f}")
        rows.append(_row(claim, t, threshold, "table1", subject, measured=measured, value=value,
                         supported=_verdict(value >= threshold, value)))
    return rows


# ----------------------------------------------------------------------------- assembly


def _missing(claim: str, t: Thresholds, config, table1_given: bool) -> dict:
    """The NA row of a claim with no evaluated subject: why it was not checked."""
    figures, _ = CLAIMS[claim]
    threshold = {"table1_target_encoder_best": -t.accuracy_tolerance,
                 "more_decoder_layers_lower_loss": t.unfreezing_rho}.get(claim)
    if threshold is None:
        threshold = getattr(t, PANEL_CLAIMS[claim][1])
    configured = [f for f in figures if f in config.get("figures", {})]
    if claim == "table1_target_encoder_best":
        why = "no Table 1 was given" if not table1_given else "Table 1 holds no source-trained encoder rows"
    elif not configured:
        why = f"none of {' / '.join(f'figures.{f}' for f in figures)} is configured"
    else:
        why = f"{', '.join(configured)} configured but has no panel of the kind this claim reads"
    return _row(claim, t, threshold, figures[0], "-", measured=f"not evaluated: {why}")


def evaluate(config: Mapping[str, Any], similarity: pd.DataFrame | None, unfreezing: pd.DataFrame | None,
             table1: pd.DataFrame | None, thresholds: Thresholds | None = None) -> pd.DataFrame:
    """One row per (claim, panel or pair) in :data:`CLAIMS` order, columns :data:`COLUMNS`;
    ``supported`` is a pandas ``boolean`` (NA = not evaluated, ``measured`` says why)."""
    t = thresholds or Thresholds()
    figures = panels.heatmap_figures(config)
    rows = []
    for claim in CLAIMS:
        if claim in PANEL_CLAIMS:
            found = _panel_rows(claim, figures, similarity, t)
        elif claim == "more_decoder_layers_lower_loss":
            found = _unfreezing_rows(config, unfreezing, t)
        else:
            found = _table1_rows(table1, t)
        rows.extend(found or [_missing(claim, t, config, table1 is not None)])
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["value"] = frame["value"].astype("float64")
    frame["threshold"] = frame["threshold"].astype("float64")
    frame["supported"] = frame["supported"].astype("boolean")
    return frame


# ----------------------------------------------------------------------------- rendering

MARKS = {True: "✔", False: "✘"}
_SHOWN = ["claim", "figure", "subject", "metric", "supported", "value", "threshold", "measured"]


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[_SHOWN].copy()
    out["supported"] = ["—" if pd.isna(v) else MARKS[bool(v)] for v in frame["supported"]]
    return out


def caption(thresholds: Thresholds | None = None) -> str:
    """One paragraph explaining how the verdicts are reached, with the thresholds in use."""
    t = thresholds or Thresholds()
    return ("Each row checks one claim of Bonheme & Grzes (2023) on one figure panel or pair of this run. "
            "Heatmap numbers are seed-pair means of the similarity score; encoder = e/k, mean, log_var, sampled; "
            "trunk = e/k; latent = mean, log_var, sampled; decoder = d/k; the input layer is excluded. Bars: "
            f"encoder - decoder quadrant margin >= {t.learned_first_margin:g} at every checkpoint (Fig. 2); "
            f"collapsed sampled row <= {t.collapsed_max:g} (Fig. 3); e/k diagonal >= {t.encoder_similar:g} "
            f"(Fig. 4); e/k - decoder diagonal >= {t.generic_margin:g} (Fig. 5a); latent diagonal gain >= "
            f"{t.latent_gain:g} (Fig. 5b); Spearman rho <= {t.unfreezing_rho:g} (Fig. 6); accuracy difference "
            f">= -{t.accuracy_tolerance:g} (Table 1). ✔ supported, ✘ not supported, — not evaluated (the "
            "measured column says why). The bars are judgement calls for CKA, not fitted values.")


def _statements(frame: pd.DataFrame) -> dict[str, str]:
    return dict(zip(frame["claim"], frame["statement"]))


def to_markdown(frame: pd.DataFrame, thresholds: Thresholds | None = None) -> str:
    """A Markdown page: title, :func:`caption`, the table (✔/✘/— for supported) and each claim's statement.
    The pipe table is :func:`vaetransfer.downstream.to_markdown` (no optional ``tabulate``: same bytes in
    every environment)."""
    from vaetransfer.downstream import to_markdown as pipe_table

    legend = "".join(f"- `{claim}`: {text}\n" for claim, text in _statements(frame).items())
    return (f"# Findings: the paper's claims checked on this run\n\n{caption(thresholds)}\n\n"
            f"{pipe_table(_display(frame))}\n## Claims\n\n{legend}")


def to_html(frame: pd.DataFrame, thresholds: Thresholds | None = None) -> str:
    """A self-contained HTML page (Snakemake report): caption paragraph and the table."""
    table = _display(frame).to_html(index=False, escape=True, na_rep="—", float_format=lambda x: f"{x:.3f}",
                                    border=0, classes="findings")
    legend = "".join(f"<dt><code>{html.escape(c)}</code></dt><dd>{html.escape(text)}</dd>"
                     for c, text in _statements(frame).items())
    style = ("body{font-family:sans-serif;margin:1em;color:#222}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:.2em .5em;vertical-align:top;font-size:.9em}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Findings</title>"
            f"<style>{style}</style></head><body>\n<h1>Findings: the paper's claims checked on this run</h1>\n"
            f"<p>{html.escape(caption(thresholds))}</p>\n{table}\n<h2>Claims</h2>\n<dl>{legend}</dl>\n</body></html>\n")
