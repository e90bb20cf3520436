"""A one-page transferability report: which parts of a source-trained VAE to retrain on a target dataset.

Inputs, all on the *target* data: the layer-by-layer similarity (CKA by default) of the source-trained
VAE (rows, ``_x``) against a target-trained one (columns, ``_y``) - the ``cross_domain`` family of the
similarity table, paper Fig. 5a -, optionally the cross-domain reconstruction grid (Figs. 7-8), the
Table 1 classification comparison and the held-out reconstruction losses of the progressive decoder
unfreezing runs (Fig. 6). Output: one self-contained HTML page (images embedded as base64 PNG).

Blocks of the matrix (the ``input`` row and column are always excluded):

- *encoder* = the layers of :data:`vaetransfer.layers.ENCODER_LAYERS` (conv: e/1..e/6, mean, log_var,
  sampled; generally every ``e/k`` plus the latent layers), *decoder* = ``DECODER_LAYERS`` (every ``d/k``);
- *trunk* = the encoder without its latent layers (``e/k`` only), *latent* = mean, log_var, sampled.

:func:`quadrant_summary` gives the mean of each quadrant (``encoder/decoder`` = source-trained encoder
rows x target-trained decoder columns, etc.) and the mean of the diagonal (each layer against the same
layer of the other model) over the encoder, trunk, latent and decoder layers. NaN cells (a constant,
collapsed representation) are left out of the means.

The rule (:func:`recommend`; thresholds are the fields of :class:`Thresholds`). Components follow the
paper's order (Sections 4.2-4.3) - encoder trunk, latent layers (mean/log_var heads), decoder - and
"retrain" means re-initialise and train on the target with the rest frozen, as the transfer runs do.
The defaults are judgement calls, not fitted values: recalibrate them against a same-dataset seed pair.

1. Encoder: keep it iff the trunk diagonal CKA >= ``encoder`` (0.8, "highly similar": the paper finds
   encoders transfer). Below it, nothing is worth keeping (the encoder is the most transferable part
   in the paper): retrain every component, i.e. train from scratch.
2. Latent layers: retrain them iff the latent diagonal < ``latent`` (0.5, less than half of perfect
   similarity; the paper's retrained mean/log_var layers bring the decoder closer, Fig. 5b), or if
   the target-trained encoder's mean test accuracy exceeds the source-trained one's by more than
   ``accuracy_gap`` (0.05 absolute; Table 1 classifies the *mean* layer). A gap <= ``accuracy_gap``
   is reported as "the encoder representation transfers for classification".
3. Decoder: without unfreezing losses, retrain it iff the decoder diagonal < ``decoder`` (0.6: lower
   than the encoder's bar because decoder activations come from the *sampled* z, whose noise lowers
   even same-model similarities), innermost layer first (Fig. 6). With unfreezing losses (held-out
   reconstruction loss per number k of innermost decoder layers retrained, k = 0 = frozen decoder),
   the losses decide: retrain d/1..d/k for the smallest k whose loss is within ``loss_tolerance`` (5 %)
   of the best; k = 0 keeps the decoder. If latent layers are retrained and ``inner<k>_latents`` losses
   exist, those are used (Fig. 6b), else the plain series (Fig. 6a).

A NaN summary value fails every ">=" test, so an unmeasured component is retrained (the safe side).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from vaetransfer.io import atomic_path
from vaetransfer.plotting import heatmap, layer_matrix, select_cross_domain

LATENT = ("mean", "log_var", "sampled")
COMPONENTS = ("encoder", "latent layers", "decoder")
DIAGONALS = ("encoder diagonal", "trunk diagonal", "latent diagonal", "decoder diagonal")


@dataclass(frozen=True)
class Thresholds:
    """The rule's parameters (module docstring): CKA bars for keeping each component, the largest
    tolerated accuracy gap (absolute) and the relative reconstruction-loss tolerance."""
    encoder: float = 0.8
    latent: float = 0.5
    decoder: float = 0.6
    accuracy_gap: float = 0.05
    loss_tolerance: float = 0.05


@dataclass
class Recommendation:
    """``retrain``: components among :data:`COMPONENTS`, in model order; ``reasons``: plain-language
    sentences citing the numbers; ``decoder_layers``: decoder layers to retrain when known."""
    retrain: list[str]
    reasons: list[str]
    decoder_layers: list[str] = field(default_factory=list)
    thresholds: Thresholds = field(default_factory=Thresholds)

    def headline(self) -> str:
        if not self.retrain:
            return "Keep the whole source model: retrain nothing."
        if "encoder" in self.retrain:
            return "Train from scratch: retrain the encoder, the latent layers and the decoder."
        parts = list(self.retrain)
        if "decoder" in parts and self.decoder_layers:
            parts[parts.index("decoder")] = f"decoder ({', '.join(self.decoder_layers)})"
        return "Retrain the " + " and the ".join(parts) + "; keep the rest of the source model frozen."


def blocks(layers) -> dict[str, list[str]]:
    """The encoder, trunk, latent and decoder layers among ``layers`` (``input`` and others dropped)."""
    trunk, latent = [n for n in layers if n.startswith("e/")], [n for n in layers if n in LATENT]
    return {"encoder": [n for n in layers if n.startswith("e/") or n in LATENT], "trunk": trunk,
            "latent": latent, "decoder": [n for n in layers if n.startswith("d/")]}


def _mean(values) -> float:
    values = np.asarray(values, dtype=float).ravel()
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def quadrant_summary(matrix: pd.DataFrame) -> dict[str, float]:
    """Mean similarity per quadrant (``<row block>/<column block>``, rows = source-trained model) and
    mean diagonal per block; ``n_layers`` is the number of diagonal layers shared by both axes."""
    rows, cols = blocks(matrix.index), blocks(matrix.columns)
    if not rows["encoder"] or not rows["decoder"] or not cols["encoder"] or not cols["decoder"]:
        raise ValueError(f"matrix lacks encoder or decoder layers (rows {list(matrix.index)}, "
                         f"columns {list(matrix.columns)}); only VAE architectures are supported")
    out = {f"{r}/{c}": _mean(matrix.loc[rows[r], cols[c]].to_numpy())
           for r in ("encoder", "decoder") for c in ("encoder", "decoder")}
    shared = [n for n in matrix.index if n in set(matrix.columns) and n != "input"]
    for name, layers in blocks(shared).items():
        out[f"{name} diagonal"] = _mean([matrix.loc[n, n] for n in layers])
    out["n_layers"] = len(shared)
    return out


def _unfreezing_series(unfreezing, latents: bool) -> tuple[dict[int, float], bool]:
    """{k: loss} from keys k (int), "inner<k>", "inner<k>_latents", "latents" (k=0, latents retrained)
    or "source" (k=0, frozen); returns the with-latents series if wanted and present."""
    plain, with_latents = {}, {}
    for key, loss in dict(unfreezing).items():
        if isinstance(key, (int, np.integer)):
            plain[int(key)] = float(loss)
            continue
        match = re.fullmatch(r"inner([0-9])(_latents)?|(latents)|(source)", str(key))
        if match is None:
            raise ValueError(f"unfreezing key {key!r}: expected k, 'inner<k>[_latents]', 'latents' or 'source'")
        k = int(match.group(1)) if match.group(1) else 0
        (with_latents if (match.group(2) or match.group(3)) else plain)[k] = float(loss)
    for series, flag in sorted([(with_latents, True), (plain, False)], key=lambda pair: pair[1] != latents):
        if len(series) > 1:
            return series, flag
    raise ValueError(f"unfreezing needs losses for at least two levels, got {dict(unfreezing)}")


def _accuracies(downstream: pd.DataFrame) -> tuple[float, float]:
    if missing := {"role", "test_accuracy"} - set(downstream.columns):
        raise ValueError(f"downstream lacks column(s) {sorted(missing)}")
    acc = {role: _mean(downstream.loc[downstream["role"] == role, "test_accuracy"]) for role in ("source", "target")}
    return acc["source"], acc["target"]


def recommend(summary: Mapping[str, float], downstream: pd.DataFrame | None = None,
              unfreezing: Mapping | None = None, thresholds: Thresholds | None = None,
              metric: str = "CKA") -> Recommendation:
    """Apply the module docstring's rule to a :func:`quadrant_summary` (plus, optionally, a Table 1
    frame with ``role`` and ``test_accuracy`` for one source/target pair, and unfreezing losses)."""
    t = thresholds or Thresholds()
    trunk, latent, decoder = (summary["trunk diagonal"], summary["latent diagonal"], summary["decoder diagonal"])
    reasons, retrain, decoder_layers = [], set(), []  # type: list[str], set[str], list[str]
    if trunk >= t.encoder:
        reasons.append(f"The encoder transfers: its layers e/k have a mean {metric} of {trunk:.2f} with the same "
                       f"layers of a target-trained encoder (>= {t.encoder:.2f}), so keep it frozen.")
    else:
        retrain.update(COMPONENTS)
        reasons.append(f"The encoder does not transfer: its layers e/k have a mean {metric} of {trunk:.2f} with "
                       f"a target-trained encoder (< {t.encoder:.2f}). As the encoder is the most transferable "
                       f"part of a VAE, little of the source model is worth keeping: train from scratch.")
    if latent >= t.latent:
        reasons.append(f"The latent layers (mean, log_var, sampled) are similar to the target-trained ones "
                       f"(mean {metric} {latent:.2f} >= {t.latent:.2f}).")
    else:
        retrain.add("latent layers")
        reasons.append(f"The latent layers (mean, log_var, sampled) differ from the target-trained ones "
                       f"(mean {metric} {latent:.2f} < {t.latent:.2f}): retrain the mean and log_var layers.")
    if downstream is not None and len(downstream):
        source_acc, target_acc = _accuracies(downstream)
        gap = target_acc - source_acc
        numbers = (f"mean test accuracy {source_acc:.2f} from the source-trained encoder's mean representation "
                   f"vs {target_acc:.2f} from the target-trained one (gap {gap:+.2f})")
        if gap <= t.accuracy_gap:
            reasons.append(f"The encoder representation transfers for classification: {numbers}, "
                           f"within {t.accuracy_gap:.2f}.")
        else:
            retrain.add("latent layers")
            reasons.append(f"The mean representation loses target information: {numbers}, more than "
                           f"{t.accuracy_gap:.2f}; retrain the latent layers before classifying.")
    if unfreezing:
        losses, used_latents = _unfreezing_series(unfreezing, "latent layers" in retrain)
        best = min(losses.values())
        k = min(k for k, v in losses.items() if v <= best * (1 + t.loss_tolerance))
        listing = ", ".join(f"k={k_}: {v:.1f}" for k_, v in sorted(losses.items()))
        series = "with the latent layers retrained" if used_latents else "with the latent layers frozen"
        if k == 0:
            reasons.append(f"Retraining decoder layers does not lower the held-out reconstruction loss by more than "
                           f"{t.loss_tolerance:.0%} ({series}; {listing}): keep the decoder (its diagonal {metric} "
                           f"is {decoder:.2f}).")
        else:
            decoder_layers = [f"d/{i}" for i in range(1, k + 1)]
            retrain.add("decoder")
            reasons.append(f"Retrain the {k} innermost decoder layer(s) ({', '.join(decoder_layers)}): that is the "
                           f"fewest whose held-out reconstruction loss is within {t.loss_tolerance:.0%} of the best "
                           f"({series}; {listing}); the decoder's diagonal {metric} is {decoder:.2f}.")
    elif decoder >= t.decoder:
        reasons.append(f"The decoder is similar to a target-trained decoder (mean diagonal {metric} "
                       f"{decoder:.2f} >= {t.decoder:.2f}): keep it.")
    else:
        retrain.add("decoder")
        reasons.append(f"The decoder differs from a target-trained decoder (mean diagonal {metric} {decoder:.2f} "
                       f"< {t.decoder:.2f}): retrain it, progressively from the innermost layer d/1 outwards, "
                       f"keeping the fewest layers that bring the reconstruction loss down.")
    if "encoder" in retrain:
        decoder_layers = []
        reasons.append("Because the encoder is retrained, the latent layers and the decoder are retrained too, "
                       "whatever their own numbers say.")
    return Recommendation([c for c in COMPONENTS if c in retrain], reasons, decoder_layers, t)


def rule_lines(t: Thresholds, metric: str = "CKA") -> list[str]:
    """The rule of the module docstring with the thresholds in use, one plain sentence per component."""
    return [
        f"Keep the encoder iff the mean diagonal {metric} of e/k >= {t.encoder}; otherwise train from scratch.",
        f"Retrain mean/log_var iff the mean diagonal {metric} of mean, log_var, sampled < {t.latent}, or the "
        f"target-trained encoder's mean test accuracy is higher by more than {t.accuracy_gap}.",
        f"Retrain the decoder iff its mean diagonal {metric} < {t.decoder}; given unfreezing losses, instead retrain "
        f"the fewest innermost layers whose loss is within {t.loss_tolerance:.0%} of the best.",
    ]


def _image_src(png: bytes | str | os.PathLike) -> str:
    data = png if isinstance(png, (bytes, bytearray)) else Path(png).read_bytes()
    if bytes(data[:8]) != b"\x89PNG\r\n\x1a\n":
        raise ValueError("expected PNG bytes or the path of a PNG file")
    return "data:image/png;base64," + base64.b64encode(bytes(data)).decode("ascii")


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame, index: bool = True) -> str:
    head = ([""] if index else []) + [str(c) for c in frame.columns]
    lines = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for label, row in frame.iterrows():
        cells = ([f"<th>{html.escape(str(label))}</th>"] if index else []) + [f"<td>{_fmt(v)}</td>" for v in row]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(lines + ["</table>"])


_CSS = """body{font-family:sans-serif;max-width:60em;margin:1em auto;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .6em;text-align:right}
.rec{background:#eef6ee;border-left:4px solid #4a4;padding:.5em 1em}.figs img{max-width:48%;vertical-align:top}
.small{font-size:.85em;color:#555}"""

DOWNSTREAM_COLUMNS = ("role", "source_dataset", "target_dataset", "seed", "n_labels", "train_accuracy",
                      "test_accuracy")


def render_html(title: str, summary: Mapping[str, float], recommendation: Recommendation,
                heatmap_png: bytes | str | os.PathLike, grid_png: bytes | str | os.PathLike | None,
                downstream: pd.DataFrame | None, out_path: str | os.PathLike, metric: str = "CKA") -> Path:
    """Write the one-page, self-contained HTML report atomically; returns its path."""
    t = recommendation.thresholds
    quad = pd.DataFrame([[summary["encoder/encoder"], summary["encoder/decoder"]],
                         [summary["decoder/encoder"], summary["decoder/decoder"]]],
                        index=["source-trained encoder", "source-trained decoder"],
                        columns=["target-trained encoder", "target-trained decoder"])
    diag = pd.DataFrame({f"mean diagonal {metric}": [summary[k] for k in DIAGONALS]},
                        index=[k.replace(" diagonal", "") for k in DIAGONALS])
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
        '<div class="rec"><h2>Recommendation</h2>', f"<p><b>{html.escape(recommendation.headline())}</b></p>",
        "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in recommendation.reasons) + "</ul></div>",
        f"<h2>Encoder vs decoder {html.escape(metric)} (source-trained rows, target-trained columns, target data)</h2>",
        _table(quad), _table(diag),
        '<p class="small">Encoder = e/k, mean, log_var, sampled; decoder = d/k; trunk = e/k; latent = mean, '
        'log_var, sampled. The input layer is excluded; NaN cells are left out of the means.</p>',
        '<div class="figs">', f'<img alt="{html.escape(metric)} heatmap" src="{_image_src(heatmap_png)}">',
    ]
    parts += ([f'<img alt="cross-domain reconstructions" src="{_image_src(grid_png)}"></div>'] if grid_png is not None
              else ['</div><p class="small">No cross-domain reconstruction grid was given.</p>'])
    if downstream is not None and len(downstream):
        cols = [c for c in DOWNSTREAM_COLUMNS if c in downstream.columns] or list(downstream.columns)
        parts += ["<h2>Classification of the target labels from the mean representation (Table 1)</h2>",
                  _table(downstream[cols].reset_index(drop=True), index=False)]
    parts += [
        "<h2>How the recommendation was derived</h2>",
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in rule_lines(t, metric)) + "</ul>",
        "</body></html>",
    ]
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        tmp.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return out_path


def figure_png(fig, dpi: int = 110) -> bytes:
    """A matplotlib Figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def classification_rows(downstream: pd.DataFrame, source: str, target: str) -> pd.DataFrame:
    """The Table 1 rows of ``target`` classified from the target-trained encoder and the ``source``-trained one."""
    role_ok = (downstream["role"] == "target") | (
        (downstream["role"] == "source") & (downstream["source_dataset"] == source))
    return downstream[role_ok & (downstream["target_dataset"] == target)].reset_index(drop=True)


@dataclass
class Report:
    """What :func:`build_report` wrote and decided."""
    path: Path
    summary: dict[str, float]
    recommendation: Recommendation
    matrix: pd.DataFrame


def build_report(table: pd.DataFrame, source: str, target: str, out_path: str | os.PathLike,
                 metric: str = "cka", grid_png: bytes | str | os.PathLike | None = None,
                 downstream: pd.DataFrame | None = None, unfreezing: Mapping | None = None,
                 thresholds: Thresholds | None = None, architecture: str = "conv") -> Report:
    """Select the ``cross_domain`` rows of ``source`` -> ``target`` (both models evaluated on target
    data; :class:`vaetransfer.plotting.EmptySelection` names source, target and metric if none), draw
    the seed-averaged heatmap, apply :func:`recommend` and write the page to ``out_path``."""
    rows = select_cross_domain(table, source, target, metric)
    rows = rows[(rows["architecture_x"] == architecture) & (rows["architecture_y"] == architecture)]
    if rows.empty:
        raise LookupError(f"no {architecture!r} cross_domain rows for source={source!r}, target={target!r}, "
                          f"metric={metric!r}")
    matrix = layer_matrix(rows)
    summary = quadrant_summary(matrix)
    if downstream is not None:
        downstream = classification_rows(downstream, source, target)
    label = metric.upper() if metric == "cka" else metric.capitalize()
    rec = recommend(summary, downstream, unfreezing, thresholds, metric=label)
    fig = heatmap(matrix, ylabel=f"{source}-trained VAE", xlabel=f"{target}-trained VAE",
                  title=f"{label} on {target} data")
    path = render_html(f"Transferability report: {source} -> {target}", summary, rec, figure_png(fig), grid_png,
                       downstream, out_path, metric=label)
    return Report(path, summary, rec, matrix)
