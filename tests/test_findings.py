"""The paper's claims as checks (vaetransfer.findings): every claim is supported by synthetic numbers that
satisfy it and refuted by numbers that violate it; values match hand computations; missing inputs give NA."""

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vaetransfer.findings import CLAIMS, COLUMNS, Thresholds, evaluate, to_html, to_markdown
from vaetransfer.layers import DECODER_LAYERS, ENCODER_LAYERS, LAYER_NAMES
from vaetransfer.scoring import IDENTITY_FIELDS, TABLE_COLUMNS, as_table

REPO = Path(__file__).resolve().parents[1]
CONFIG = {
    "training": {"seeds": [0, 1]},
    "transfer": {"seeds": [0]},
    "figures": {
        "fig2": {"dataset": "dsprites", "objective": "beta_vae", "hparam": 1},
        "fig3": {"dataset": "dsprites", "x": {"objective": "beta_vae", "hparam": 8},
                 "y": {"objective": "beta_vae", "hparam": 1}},
        "fig4": {"dataset": "dsprites", "x": {"objective": "beta_tc_vae", "hparam": 1},
                 "y": {"objective": "dip_vae_ii", "hparam": 1}},
        "fig5a": {"source": "symsol", "target": "dsprites"},
        "fig5b": {"source": "symsol", "target": "dsprites"},
        "fig6": {"source": "symsol", "target": "dsprites"},
    },
}
TRUNK = [n for n in LAYER_NAMES if n.startswith("e/")]
LATENT = ["mean", "log_var", "sampled"]


def side(dataset="dsprites", objective="beta_vae", hparam=1.0, seed=0, step=30, eval_dataset=None,
         source_dataset=None, retrained=""):
    return {"dataset": dataset, "architecture": "conv", "objective": objective, "hparam_name": "beta",
            "hparam": float(hparam), "seed": seed, "step": step, "eval_dataset": eval_dataset or dataset,
            "source_dataset": source_dataset or dataset, "retrained": retrained}


def block(family, x, y, score):
    """All 16 x 16 layer pairs of one snapshot pair; ``score(layer_x, layer_y)``."""
    ids = {f"{f}_x": x[f] for f in IDENTITY_FIELDS} | {f"{f}_y": y[f] for f in IDENTITY_FIELDS}
    return [{**ids, "family": family, "layer_x": lx, "layer_y": ly, "metric": "cka", "score": score(lx, ly),
             "n_examples": 10, "constant_x": False, "constant_y": False, "debiased": False}
            for lx, ly in itertools.product(LAYER_NAMES, repeat=2)]


def table(rows):
    return as_table(pd.DataFrame(rows, columns=TABLE_COLUMNS))


def jitter(seed_x, seed_y):
    """+-0.02 per seed pair; cancels in the mean over the seed pairs built here."""
    return 0.02 if (seed_x + seed_y) % 2 == 0 else -0.02


def dynamics(enc, dec):
    """Fig. 2 rows: checkpoints 10, 20 (and the final 30) vs 30, seeds 0 and 1, plus a cross-seed pair that
    must be ignored. Encoder/encoder cells: enc[step] (+0.09 on the diagonal), decoder/decoder: dec[step]."""
    def score(step, s):
        def f(lx, ly):
            if lx in ENCODER_LAYERS and ly in ENCODER_LAYERS:
                return enc.get(step, 1.0) + (0.09 if lx == ly else 0.0) + s
            if lx in DECODER_LAYERS and ly in DECODER_LAYERS:
                return dec.get(step, 1.0) + s
            return 0.1
        return f
    rows = []
    for seed, step in itertools.product([0, 1], [10, 20, 30]):
        rows += block("learning_dynamics", side(seed=seed, step=step), side(seed=seed, step=30),
                      score(step, 0.02 if seed == 0 else -0.02))
    rows += block("learning_dynamics", side(seed=0, step=10), side(seed=1, step=30), lambda lx, ly: -5.0)
    return rows


def seed_pairs(family, x, y, score):
    rows = []
    for sx, sy in itertools.product([0, 1], repeat=2):
        rows += block(family, {**x, "seed": sx}, {**y, "seed": sy},
                      lambda lx, ly: score(lx, ly) + jitter(sx, sy))
    return rows


def collapsed(sampled_max):
    def score(lx, ly):
        if lx == "sampled":
            return sampled_max if ly == "d/3" else 0.05
        return 0.7 if lx in ENCODER_LAYERS else 0.2
    return seed_pairs("model_pairs", side(hparam=8), side(), score)


def diagonal(trunk, latent, decoder, other=0.2):
    def score(lx, ly):
        if lx != ly:
            return other
        return trunk if lx in TRUNK else latent if lx in LATENT else decoder if lx in DECODER_LAYERS else 1.0
    return score


def across_objectives(trunk, decoder):
    return seed_pairs("model_pairs", side(objective="beta_tc_vae"), side(objective="dip_vae_ii"),
                      diagonal(trunk, 0.5, decoder))


def cross_domain(trunk, latent, decoder):
    return seed_pairs("cross_domain", side("symsol", eval_dataset="dsprites"), side(), diagonal(trunk, latent, decoder))


def retrained(latent):
    x = side(source_dataset="symsol", retrained="mean,log_var")
    return seed_pairs("retrained_latents", x, side(), diagonal(0.8, latent, 0.5))


def similarity(good=True):
    """Every similarity claim's panel, satisfying the claims (good) or violating them."""
    rows = (dynamics({10: 0.7, 20: 0.8}, {10: 0.3, 20: 0.5}) if good else
            dynamics({10: 0.7, 20: 0.8}, {10: 0.3, 20: 0.9}))
    rows += collapsed(0.25 if good else 0.5)
    rows += across_objectives(0.8, 0.4) if good else across_objectives(0.5, 0.4)
    rows += cross_domain(0.8, 0.4, 0.5) if good else cross_domain(0.52, 0.4, 0.5)
    rows += retrained(0.7 if good else 0.3)
    return table(rows)


def unfreezing(frozen, with_latents=None):
    """The unfreezing table of symsol -> dsprites: target, source (level 0), inner1..6 [, latents series]."""
    rows = [{"model": "target", "order": None, "level": 0, "latents": "trained", "heldout_loss": 50.0},
            {"model": "source", "order": None, "level": 0, "latents": "frozen", "heldout_loss": frozen[0]}]
    rows += [{"model": f"inner{k}", "order": "inner", "level": k, "latents": "frozen", "heldout_loss": v}
             for k, v in enumerate(frozen[1:], 1)]
    if with_latents:
        rows.append({"model": "latents", "order": None, "level": 0, "latents": "retrained",
                     "heldout_loss": with_latents[0]})
        rows += [{"model": f"outer{k}_latents", "order": "outer", "level": k, "latents": "retrained",
                  "heldout_loss": v} for k, v in enumerate(with_latents[1:], 1)]
    return pd.DataFrame(rows).assign(retrained="", n_examples=100)


def table1(source_accuracy):
    return pd.DataFrame([
        {"role": "target", "source_dataset": "dsprites", "target_dataset": "dsprites", "seed": 0,
         "test_accuracy": 0.40},
        {"role": "source", "source_dataset": "symsol", "target_dataset": "dsprites", "seed": 0,
         "test_accuracy": source_accuracy},
        {"role": "source", "source_dataset": "dsprites", "target_dataset": "symsol", "seed": 0, "test_accuracy": 0.9},
    ])


LOSSES = [100, 90, 85, 80, 82, 70, 60]


@pytest.fixture(scope="module")
def good():
    return evaluate(CONFIG, similarity(True), unfreezing(LOSSES, [95, 90, 80, 70]), table1(0.39))


@pytest.fixture(scope="module")
def bad():
    return evaluate(CONFIG, similarity(False), unfreezing([100, 101, 103, 104, 105, 106, 107]), table1(0.45))


def one(frame, claim, **where):
    rows = frame[frame["claim"] == claim]
    for key, value in where.items():
        rows = rows[rows[key].str.contains(value, regex=False)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def verdict(row):
    """None for NA, else the Python bool."""
    return None if pd.isna(row["supported"]) else bool(row["supported"])


def test_schema_and_every_claim_present(good):
    assert list(good.columns) == list(COLUMNS)
    assert str(good["supported"].dtype) == "boolean"
    assert list(dict.fromkeys(good["claim"])) == list(CLAIMS)


def test_good_numbers_support_every_claim(good):
    evaluated = good[good["supported"].notna()]
    assert set(evaluated["claim"]) == set(CLAIMS)
    assert evaluated["supported"].all(), good[["claim", "subject", "measured"]].to_string()


def test_violating_numbers_refute_every_claim(bad):
    evaluated = bad[bad["supported"].notna()]
    assert set(evaluated["claim"]) == set(CLAIMS)
    assert not evaluated["supported"].any(), bad[["claim", "subject", "measured"]].to_string()


def test_learning_dynamics_values_are_quadrant_margins(good, bad):
    # encoder/encoder quadrant = enc + 9 * 0.09 / 81 = enc + 0.01; seeds' +-0.02 cancel; cross-seed rows ignored
    row = one(good, "encoders_learned_first")
    assert row["value"] == pytest.approx(min(0.71 - 0.3, 0.81 - 0.5))
    assert "step 10: encoder 0.710 vs decoder 0.300" in row["measured"] and "vs step 30" in row["measured"]
    assert "step 30:" not in row["measured"].split("(vs")[0]
    assert one(bad, "encoders_learned_first")["value"] == pytest.approx(0.81 - 0.9)


def test_collapsed_sampled_value(good, bad):
    row = one(good, "collapsed_sampled_dissimilar")
    assert row["value"] == pytest.approx(0.25) and row["threshold"] == 0.3
    assert "at d/3" in row["measured"] and "mean 0.700" in row["measured"]
    assert one(bad, "collapsed_sampled_dissimilar")["value"] == pytest.approx(0.5)


def test_encoder_diagonals(good, bad):
    assert one(good, "encoders_similar_across_objectives")["value"] == pytest.approx(0.8)
    assert one(good, "encoders_generic_decoders_specific")["value"] == pytest.approx(0.3)
    assert one(bad, "encoders_generic_decoders_specific")["value"] == pytest.approx(0.02)
    # above the bar but below the decoder: still not supported
    frame = evaluate(CONFIG, table(across_objectives(0.65, 0.7)), None, None)
    row = one(frame, "encoders_similar_across_objectives")
    assert row["value"] == pytest.approx(0.65) and verdict(row) is False


def test_retrained_latents_gain(good, bad):
    row = one(good, "retrained_latents_align")
    assert row["value"] == pytest.approx(0.7 - 0.4)
    assert one(bad, "retrained_latents_align")["value"] == pytest.approx(0.3 - 0.4)
    # the cross-domain rows of the pair are missing: NA, not a verdict
    frame = evaluate(CONFIG, table(retrained(0.7)), None, None)
    row = one(frame, "retrained_latents_align")
    assert pd.isna(row["supported"]) and "cross_domain" in row["measured"]


def test_unfreezing_spearman(good, bad):
    row = one(good, "more_decoder_layers_lower_loss", subject="innermost")
    assert row["figure"] == "fig6" and row["value"] == pytest.approx(-27 / 28)  # 1 - 6 * 110 / (7 * 48)
    assert "0: 100.00" in row["measured"] and "6: 60.00" in row["measured"]
    outer = one(good, "more_decoder_layers_lower_loss", subject="outermost")
    assert outer["figure"] == "appB" and outer["value"] == pytest.approx(-1.0) and verdict(outer) is True
    assert one(bad, "more_decoder_layers_lower_loss")["value"] == pytest.approx(1.0)
    # rho passes a lax bar but the most retrained model is no better than level 0
    lax = evaluate(CONFIG, None, unfreezing([100, 50, 40, 30, 20, 10, 100]), None, Thresholds(unfreezing_rho=1.0))
    assert verdict(one(lax, "more_decoder_layers_lower_loss")) is False


def test_unfreezing_pair_columns_filter():
    frame = pd.concat([unfreezing(LOSSES).assign(source="symsol", target="dsprites", seed=0),
                       unfreezing(LOSSES[::-1]).assign(source="celeba", target="cars3d", seed=0)])
    row = one(evaluate(CONFIG, None, frame, None), "more_decoder_layers_lower_loss")
    assert row["value"] == pytest.approx(-27 / 28) and row["subject"].startswith("symsol -> dsprites, seed 0")


def test_table1_difference(good, bad):
    row = one(good, "table1_target_encoder_best", subject="symsol -> dsprites")
    assert row["value"] == pytest.approx(0.01) and row["threshold"] == pytest.approx(-0.02) and verdict(row) is True
    assert one(bad, "table1_target_encoder_best", subject="symsol -> dsprites")["value"] == pytest.approx(-0.05)
    missing = one(good, "table1_target_encoder_best", subject="dsprites -> symsol")
    assert pd.isna(missing["supported"]) and "no target-trained" in missing["measured"]


def test_missing_inputs_give_na_rows():
    frame = evaluate(CONFIG, None, None, None)
    assert list(dict.fromkeys(frame["claim"])) == list(CLAIMS)
    assert frame["supported"].isna().all()
    assert frame["measured"].str.startswith("not evaluated").all()
    assert np.isnan(frame["value"]).all()


def test_unconfigured_figures_give_one_na_row_per_claim():
    frame = evaluate({"figures": {}}, similarity(True), None, None)
    assert list(frame["claim"]) == list(CLAIMS) and frame["supported"].isna().all()
    assert "figures.fig3" in one(frame, "collapsed_sampled_dissimilar")["measured"]
    assert "no Table 1" in one(frame, "table1_target_encoder_best")["measured"]


def test_thresholds_are_applied():
    frame = evaluate(CONFIG, similarity(True), None, None, Thresholds(collapsed_max=0.2, encoder_similar=0.9))
    assert verdict(one(frame, "collapsed_sampled_dissimilar")) is False
    assert one(frame, "encoders_similar_across_objectives")["threshold"] == 0.9
    assert "0.9" in one(frame, "encoders_similar_across_objectives")["statement"]


def test_markdown_and_html(good, bad):
    frame = pd.concat([good, evaluate({"figures": {}}, None, None, None)], ignore_index=True)
    md = to_markdown(frame)
    assert "✔" in md and "—" in md and all(c in md for c in CLAIMS)
    assert "✘" in to_markdown(bad)
    page = to_html(frame)
    assert page.startswith("<!DOCTYPE html>") and "<table" in page and "Spearman rho" in page
    assert all(c in page for c in CLAIMS) and "✔" in page and "<dl>" in page
    assert "## Claims" in md and "Encoders are learned before decoders" in md


def load_script():
    spec = importlib.util.spec_from_file_location("findings_script", REPO / "workflow/scripts/findings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_main_writes_three_files(tmp_path):
    sim = similarity(True)
    half = len(sim) // 2
    paths = [tmp_path / "sim_a.parquet", tmp_path / "sim_b.parquet"]
    sim.iloc[:half].to_parquet(paths[0]), sim.iloc[half:].to_parquet(paths[1])
    unf = tmp_path / "unfreezing/symsol_to_dsprites/seed0.parquet"
    unf.parent.mkdir(parents=True)
    unfreezing(LOSSES).to_parquet(unf)
    t1 = tmp_path / "table1.parquet"
    table1(0.39).to_parquet(t1)
    out = {name: tmp_path / "out" / f"findings.{ext}" for name, ext in
           (("parquet", "parquet"), ("markdown", "md"), ("html", "html"))}
    frame = load_script().main([str(p) for p in paths], [str(unf)], str(t1), CONFIG, str(out["parquet"]),
                               str(out["markdown"]), str(out["html"]))
    written = pd.read_parquet(out["parquet"])
    assert list(written["claim"]) == list(frame["claim"]) and str(written["supported"].dtype) == "boolean"
    assert written["supported"].dropna().all() and set(written["claim"]) == set(CLAIMS)
    assert "✔" in out["markdown"].read_text() and "<table" in out["html"].read_text()
    empty = load_script().main([], [], None, CONFIG, str(out["parquet"]), str(out["markdown"]), str(out["html"]))
    assert empty["supported"].isna().all()
    # findings.thresholds in the config: an impossible bar for Fig. 4 turns its claim down.
    strict = {**CONFIG, "findings": {"thresholds": {"encoder_similar": 1.01}}}
    frame = load_script().main([str(p) for p in paths], [str(unf)], str(t1), strict, str(out["parquet"]),
                               str(out["markdown"]), str(out["html"]))
    fig4 = frame[frame["claim"] == "encoders_similar_across_objectives"]
    assert not fig4["supported"].any() and (fig4["threshold"] == 1.01).all()


def test_a_panel_repeated_in_another_figure_is_checked_once():
    config = {**CONFIG, "figures": {**CONFIG["figures"], "appI": {"dataset": "dsprites", "objective": "beta_vae",
                                                                "hparam": 1, "step_x": "all"}}}
    frame = evaluate(config, similarity(True), None, None)
    assert list(frame.loc[frame["claim"] == "encoders_learned_first", "figure"]) == ["fig2"]
