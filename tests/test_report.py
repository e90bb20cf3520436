"""The transferability report: quadrant means, the documented rule, and the rendered page."""

import base64
import html
import itertools
import re

import numpy as np
import pandas as pd
import pytest

from vaetransfer.layers import DECODER_LAYERS, ENCODER_LAYERS, LAYER_NAMES
from vaetransfer.report import (Recommendation, Thresholds, blocks, build_report, quadrant_summary, recommend,
                                render_html)
from vaetransfer.scoring import TABLE_COLUMNS, as_table

PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def synthetic_matrix():
    """Cell (i, j) = i + 100 j over LAYER_NAMES indices, so every block mean is checkable by hand."""
    n = len(LAYER_NAMES)
    values = np.arange(n)[:, None] + 100.0 * np.arange(n)[None, :]
    return pd.DataFrame(values, index=list(LAYER_NAMES), columns=list(LAYER_NAMES))


def summary(trunk, latent, decoder):
    return {"encoder/encoder": trunk, "encoder/decoder": 0.2, "decoder/encoder": 0.2, "decoder/decoder": decoder,
            "encoder diagonal": trunk, "trunk diagonal": trunk, "latent diagonal": latent,
            "decoder diagonal": decoder, "n_layers": 15}


def synthetic_table(source="dsprites", target="symsol", trunk=0.9, latent=0.3, decoder=0.2):
    """cross_domain rows of 4 seed pairs; diagonal scores set per block, off-diagonal 0.1, seed jitter averaging out."""
    rows = []
    level = {"input": 1.0, **{n: trunk for n in LAYER_NAMES if n.startswith("e/")},
             **{n: latent for n in ("mean", "log_var", "sampled")}, **{n: decoder for n in DECODER_LAYERS}}
    for sx, sy in itertools.product([0, 1], [0, 1]):
        for lx, ly in itertools.product(LAYER_NAMES, repeat=2):
            rows.append({
                "dataset_x": source, "architecture_x": "conv", "architecture_y": "conv", "objective_x": "beta_vae",
                "hparam_name_x": "beta", "hparam_x": 1.0, "seed_x": sx, "step_x": 20, "eval_dataset_x": target,
                "dataset_y": target, "objective_y": "beta_vae", "hparam_name_y": "beta", "hparam_y": 1.0,
                "seed_y": sy, "step_y": 20, "eval_dataset_y": target, "family": "cross_domain",
                "layer_x": lx, "layer_y": ly, "metric": "cka",
                "score": (level[lx] if lx == ly else 0.1) + 0.01 * (sx - sy), "n_examples": 10,
            })
    return as_table(pd.DataFrame(rows, columns=TABLE_COLUMNS))


def test_blocks_are_the_layer_constants():
    b = blocks(LAYER_NAMES)
    assert b["encoder"] == list(ENCODER_LAYERS) and b["decoder"] == list(DECODER_LAYERS)
    assert b["latent"] == ["mean", "log_var", "sampled"] and b["trunk"] == [f"e/{k}" for k in range(1, 7)]


def test_quadrant_means_match_hand_computation():
    s = quadrant_summary(synthetic_matrix())
    enc, dec = np.arange(1, 10), np.arange(10, 16)  # indices of ENCODER_LAYERS / DECODER_LAYERS; input (0) excluded
    assert s["encoder/encoder"] == pytest.approx(enc.mean() + 100 * enc.mean())
    assert s["encoder/decoder"] == pytest.approx(enc.mean() + 100 * dec.mean())  # source encoder x target decoder
    assert s["decoder/encoder"] == pytest.approx(dec.mean() + 100 * enc.mean())
    assert s["decoder/decoder"] == pytest.approx(dec.mean() + 100 * dec.mean())
    assert s["encoder diagonal"] == pytest.approx(101 * enc.mean())
    assert s["trunk diagonal"] == pytest.approx(101 * 3.5)
    assert s["latent diagonal"] == pytest.approx(101 * 8)
    assert s["decoder diagonal"] == pytest.approx(101 * dec.mean())
    assert s["n_layers"] == 15


def test_quadrant_means_skip_nan_cells():
    m = synthetic_matrix()
    m.loc["d/6", "d/6"] = np.nan
    assert quadrant_summary(m)["decoder diagonal"] == pytest.approx(101 * 12)  # mean of 10..14


def test_encoder_high_decoder_low_retrains_latents_and_decoder():
    rec = recommend(summary(0.9, 0.3, 0.2))
    assert rec.retrain == ["latent layers", "decoder"]
    text = " ".join(rec.reasons)
    assert "0.90" in text and "0.30" in text and "0.20" in text
    assert "encoder transfers" in text and "innermost" in text
    assert rec.headline().startswith("Retrain the latent layers and the decoder")


def test_everything_high_retrains_nothing():
    rec = recommend(summary(0.95, 0.85, 0.9))
    assert rec.retrain == [] and "retrain nothing" in rec.headline()
    assert len(rec.reasons) == 3


def test_low_encoder_means_train_from_scratch():
    rec = recommend(summary(0.5, 0.9, 0.9))
    assert rec.retrain == ["encoder", "latent layers", "decoder"]
    assert "0.50" in rec.reasons[0] and "scratch" in rec.headline()


def test_nan_is_retrained_and_thresholds_are_parameters():
    assert recommend(summary(0.9, float("nan"), 0.9)).retrain == ["latent layers"]
    loose = Thresholds(encoder=0.5, latent=0.2, decoder=0.1)
    assert recommend(summary(0.6, 0.3, 0.2), thresholds=loose).retrain == []
    assert recommend(summary(0.6, 0.3, 0.2)).retrain == ["encoder", "latent layers", "decoder"]


def test_classification_gap_decides_latents():
    close = pd.DataFrame({"role": ["target", "source"], "test_accuracy": [0.40, 0.39]})  # Table 1 dSprites
    far = pd.DataFrame({"role": ["target", "source"], "test_accuracy": [0.59, 0.42]})  # Table 1 Cars3D
    rec = recommend(summary(0.9, 0.8, 0.9), downstream=close)
    assert rec.retrain == [] and any("transfers for classification" in r and "0.39" in r for r in rec.reasons)
    rec = recommend(summary(0.9, 0.8, 0.9), downstream=far)
    assert rec.retrain == ["latent layers"] and any("+0.17" in r for r in rec.reasons)


def test_unfreezing_losses_pick_the_fewest_decoder_layers():
    losses = {0: 300.0, 1: 200.0, 2: 150.0, 3: 104.0, 4: 101.0, 5: 100.0, 6: 100.5}
    rec = recommend(summary(0.9, 0.8, 0.9), unfreezing=losses)  # decoder CKA high but the losses decide
    assert rec.retrain == ["decoder"] and rec.decoder_layers == ["d/1", "d/2", "d/3"]
    assert "d/1, d/2, d/3" in rec.headline() and any("k=3: 104.0" in r for r in rec.reasons)
    flat = {"source": 100.0, "inner1": 99.0, "inner2": 98.5, "latents": 500.0, "inner1_latents": 400.0}
    rec = recommend(summary(0.9, 0.8, 0.2), unfreezing=flat)
    assert rec.retrain == [] and any("keep the decoder" in r for r in rec.reasons)
    rec = recommend(summary(0.9, 0.3, 0.2), unfreezing=flat)  # latents retrained -> the _latents series
    assert rec.retrain == ["latent layers", "decoder"] and rec.decoder_layers == ["d/1"]
    with pytest.raises(ValueError, match="unfreezing key"):
        recommend(summary(0.9, 0.8, 0.9), unfreezing={"outer2": 1.0, 0: 2.0})


def _images(page):
    return re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)


def test_build_report_renders_self_contained_page(tmp_path):
    downstream = pd.DataFrame({
        "role": ["target", "source", "source"], "source_dataset": ["symsol", "dsprites", "cars3d"],
        "target_dataset": ["symsol"] * 3, "seed": [0, 0, 0], "n_labels": [1, 1, 1],
        "train_accuracy": [0.5, 0.45, 0.1], "test_accuracy": [0.42, 0.30, 0.1]})
    out = tmp_path / "reports" / "dsprites_to_symsol.html"
    report = build_report(synthetic_table(), "dsprites", "symsol", out, grid_png=PNG_1x1, downstream=downstream)
    page = out.read_text()
    assert report.path == out and [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left
    assert report.summary["trunk diagonal"] == pytest.approx(0.9)  # seed jitter averages out
    assert report.summary["encoder/decoder"] == pytest.approx(0.1)
    assert report.recommendation.retrain == ["latent layers", "decoder"]
    assert "Retrain the latent layers and the decoder" in page
    for reason in report.recommendation.reasons:
        assert html.escape(reason) in page
    images = _images(page)
    assert len(images) == 2 and base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert base64.b64decode(images[1]) == PNG_1x1
    assert "<th>source-trained encoder</th>" in page and "<th>target-trained decoder</th>" in page
    assert "<td>0.900</td>" in page  # trunk diagonal in the diagonal table
    assert "Classification of the target labels" in page and "<td>dsprites</td>" in page
    assert "cars3d" not in page  # other sources' rows are left out
    assert "+0.12" in page and 'src="http' not in page


def test_render_without_grid_or_labels(tmp_path):
    rec = Recommendation(["decoder"], ["because 0.20 < 0.60"])
    out = render_html("t <x>", summary(0.9, 0.8, 0.2), rec, PNG_1x1, None, None, tmp_path / "r.html")
    page = out.read_text()
    assert len(_images(page)) == 1 and "No cross-domain reconstruction grid" in page
    assert "Classification" not in page and "t &lt;x&gt;" in page
    with pytest.raises(ValueError, match="PNG"):
        render_html("t", summary(0.9, 0.8, 0.2), rec, b"GIF89a", None, None, tmp_path / "s.html")


def test_missing_rows_name_source_and_target(tmp_path):
    with pytest.raises(LookupError, match=r"source='symsol', target='dsprites'"):
        build_report(synthetic_table(), "symsol", "dsprites", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
