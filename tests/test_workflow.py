"""The workflow as users run it: the real Snakemake CLI on a tiny config, dry runs, lint, format."""

import json
import re
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from vaetransfer.layers import LAYER_NAMES
from vaetransfer.scoring import TABLE_COLUMNS

from .conftest import REPO, run_snakemake

TINY = ["--configfile=tests_configs/tiny.yaml"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One end-to-end run of the tiny config in a scratch directory (shared by the tests below)."""
    work = tmp_path_factory.mktemp("tiny")
    shutil.copytree(REPO / "config", work / "config")
    shutil.copytree(REPO / "tests" / "configs", work / "tests_configs")
    run_snakemake(*TINY, "--cores", "2", cwd=work)
    return work


@pytest.mark.slow
def test_end_to_end_table_schema_and_ranges(tiny_run):
    table = pd.read_parquet(tiny_run / "results/tables/similarity.parquet")
    assert list(table.columns) == TABLE_COLUMNS
    # learning dynamics: 6 runs x 3 checkpoint pairs; cross domain: 4 seed pairs; 16 x 16 layers, 2 metrics.
    assert len(table) == (6 * 3 + 4) * 16 * 16 * 2
    assert set(table["layer_x"]) == set(LAYER_NAMES) == set(table["layer_y"])
    assert set(table["metric"]) == {"cka", "procrustes"}
    finite = table["score"].dropna()
    assert len(finite) > 0.95 * len(table)
    assert finite.between(-1e-9, 1 + 1e-9).all()
    assert (table["n_examples"] == 48).all()
    # A snapshot against itself on the same layer scores 1.
    diag = table[
        (table["step_x"] == table["step_y"]) & (table["seed_x"] == table["seed_y"])
        & (table["family"] == "learning_dynamics") & (table["layer_x"] == table["layer_y"])
    ]
    assert np.allclose(diag["score"].dropna(), 1.0, atol=1e-6)
    # Identities come from the artifacts: the cross-domain source model is evaluated on the target.
    cross = table[table["family"] == "cross_domain"]
    assert set(cross["dataset_x"]) == {"dsprites"} and set(cross["dataset_y"]) == {"symsol"}
    assert set(cross["eval_dataset_x"]) == {"symsol"} == set(cross["eval_dataset_y"])
    assert set(table["hparam_name_x"]) == {"beta"}


@pytest.mark.slow
def test_end_to_end_artifacts_describe_themselves(tiny_run):
    import torch

    run = tiny_run / "results/models/dsprites/conv/beta_vae/4/seed1"
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == ["step20.pt", "step5.pt"]
    ckpt = torch.load(run / "checkpoints/step5.pt", map_location="cpu", weights_only=False)
    assert ckpt["step"] == 5 and ckpt["config"]["hparam"] == 4.0 and ckpt["config"]["seed"] == 1
    assert ckpt["config"]["architecture"] == "conv"
    losses = pd.read_parquet(run / "losses.parquet")
    assert list(losses["step"]) == list(range(1, 21))
    # Activation dumps are temp(): removed once every shard that reads them has finished.
    assert not [p for p in (tiny_run / "results/activations").rglob("*") if p.is_file()]
    meta = json.loads((tiny_run / "results/data/dsprites/meta.json").read_text())
    assert meta["n"] == 3 * 2 * 4 * 4 * 3
    for fig in ("fig2", "fig5a"):
        for ext in ("png", "pdf"):
            assert (tiny_run / f"results/figures/{fig}.{ext}").stat().st_size > 10_000
    assert (tiny_run / "results/logs/train_vae/dsprites/conv/beta_vae/4/seed1.log").exists()


@pytest.mark.slow
def test_rerun_is_up_to_date_and_figure_target_redraws_only_the_figure(tiny_run):
    proc = run_snakemake(*TINY, "-n", cwd=tiny_run)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    (tiny_run / "results/figures/fig2.pdf").unlink()
    proc = run_snakemake(*TINY, "-n", "fig2", cwd=tiny_run)
    out = proc.stdout + proc.stderr
    assert re.search(r"plot_heatmap\s+1", out) and "train_vae" not in out


def test_paper_config_dry_run_without_data(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    start = time.perf_counter()
    proc = run_snakemake("-n", "--quiet", "rules", cwd=tmp_path)
    assert time.perf_counter() - start < 60
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    # Tables 6 and 9, the classifier and the 4.2 vanilla VAEs: 87 configurations x 5 seeds.
    assert counts["train_vae"] == "435" and counts["prepare_dataset"] == "5"
    assert int(counts["score_shard"]) > 0 and counts["aggregate_similarity"] == "1"


def test_quick_profile_plans_the_embedded_default(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    proc = run_snakemake("--profile", str(REPO / "profiles/local"), "-n", "--quiet", "rules", cwd=tmp_path)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    # 4 conv VAE configurations (vanilla on both datasets, beta = 200 and DIP-VAE-II on dSprites for
    # Figs. 3, 4), 1 FC VAE and 1 classifier, 2 seeds each.
    assert counts["prepare_dataset"] == "2" and counts["train_vae"] == "12"


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"similarity": {"metric": ["cka"]}}, "metric"),  # unknown key (typo)
        ({"training": {"steps": -3}}, "steps"),
        ({"similarity": {"metrics": ["cosine"]}}, "cosine"),
        ({"training": {"checkpoint_steps": [5, 10]}}, "training.checkpoint_steps"),
    ],
)
def test_bad_config_stops_before_any_job_naming_the_key(workdir, patch, message):
    import yaml

    config = yaml.safe_load((workdir / "tests_configs/tiny.yaml").read_text())
    for section, values in patch.items():
        config[section].update(values)
    (workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake("--configfile", "bad.yaml", "-n", cwd=workdir, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (workdir / "results").exists()


def test_lint_is_clean():
    proc = run_snakemake("--lint")
    assert "Congratulations" in proc.stdout + proc.stderr


def test_snakefmt_is_clean():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_no_default_profile():
    # Snakemake would load profiles/default over every --profile (spec snakemake.md 2.1).
    assert not (REPO / "profiles/default").exists() and not (REPO / "workflow/profiles/default").exists()


@pytest.mark.slow
def test_keep_activations_keeps_self_describing_dumps(tiny_run):
    """similarity.keep_activations: the dumps a shard reads stay, each with its sidecar."""
    import yaml

    config = yaml.safe_load((tiny_run / "tests_configs/tiny.yaml").read_text())
    config["similarity"]["keep_activations"] = True  # (--config cannot set a nested boolean)
    (tiny_run / "keep.yaml").write_text(yaml.safe_dump(config))
    shard = "results/similarity/cross_domain/dsprites_to_symsol/shard0.parquet"
    run_snakemake("--configfile=keep.yaml", "--cores", "2", "--forcerun", "score_shard", shard, cwd=tiny_run)
    sidecar = json.loads((tiny_run / "results/activations/dsprites/conv/beta_vae/1/seed0/step20/symsol.json").read_text())
    assert (tiny_run / "results/activations/dsprites/conv/beta_vae/1/seed0/step20/symsol.npz").exists()
    assert [layer["name"] for layer in sidecar["layers"]] == list(LAYER_NAMES)
    assert sidecar["eval_dataset"] == "symsol" and sidecar["model"]["dataset"] == "dsprites"
    assert sidecar["model"]["architecture"] == "conv"
    indices = np.load(tiny_run / "results/data/symsol/eval_indices.npy")
    assert sidecar["example_indices"] == indices.tolist()


@pytest.mark.slow
def test_model_zoo_through_the_workflow_with_stacked_seeds(tmp_path):
    """FC VAE, classifier and conv VAE in one DAG; with training.stack_seeds the VAEs' seeds train
    in one job each, bit-identical to their own train_vae jobs (CPU); the classifier still trains
    alone; Appendix H's family compares the conv encoder (16 layers) with the classifier (7)."""
    import torch
    import yaml

    from vaetransfer.layers import CLASSIFIER_LAYER_NAMES, FC_LAYER_NAMES

    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    config["datasets"].pop("symsol")
    config["training"].update(stack_seeds=True, sweeps=[
        {"objective": "beta_vae", "values": [1], "datasets": ["dsprites"]},
        {"architecture": "fc", "objective": "beta_vae", "values": [1], "datasets": ["dsprites"]},
        {"architecture": "classifier", "objective": "cross_entropy", "values": [1], "datasets": ["dsprites"]},
    ])
    config["similarity"].update(metrics=["cka"], families=["learning_dynamics", "encoder_vs_classifier"],
                                transfer_pairs=[])
    config["figures"] = {}
    stacked, alone = tmp_path / "stacked", tmp_path / "alone"
    for work, stack in ((stacked, True), (alone, False)):
        work.mkdir()
        (work / "zoo.yaml").write_text(yaml.safe_dump({**config, "training": {**config["training"], "stack_seeds": stack}}))
    run_snakemake("--configfile=zoo.yaml", "--cores", "2", "results/tables/similarity.parquet", cwd=stacked)
    assert (stacked / "results/logs/train_stacked/dsprites/fc/beta_vae/1.log").exists()
    assert (stacked / "results/logs/train_vae/dsprites/classifier/cross_entropy/1/seed1.log").exists()
    assert not (stacked / "results/logs/train_vae/dsprites/conv").exists()

    table = pd.read_parquet(stacked / "results/tables/similarity.parquet")
    zoo = table[table["family"] == "encoder_vs_classifier"]
    assert len(zoo) == 4 * 16 * 7  # 2 x 2 seed pairs of final models
    assert set(zoo["architecture_x"]) == {"conv"} and set(zoo["layer_y"]) == set(CLASSIFIER_LAYER_NAMES)
    assert set(zoo["hparam_name_y"]) == {"weight"}
    fc = table[(table["family"] == "learning_dynamics") & (table["architecture_x"] == "fc")]
    assert set(fc["layer_x"]) == set(FC_LAYER_NAMES) and len(fc) == 2 * 3 * 11 * 11

    target = "results/models/dsprites/conv/beta_vae/1/seed1/losses.parquet"
    run_snakemake("--configfile=zoo.yaml", "--cores", "2", target, cwd=alone)
    assert (alone / "results/logs/train_vae/dsprites/conv/beta_vae/1/seed1.log").exists()
    for step in (5, 20):
        path = f"results/models/dsprites/conv/beta_vae/1/seed1/checkpoints/step{step}.pt"
        a, b = (torch.load(w / path, map_location="cpu", weights_only=True) for w in (stacked, alone))
        assert a["config"] == b["config"] and a["step"] == b["step"] == step
        for key, value in a["state_dict"].items():
            assert torch.equal(value, b["state_dict"][key]), key
    pd.testing.assert_frame_equal(pd.read_parquet(stacked / target), pd.read_parquet(alone / target))


@pytest.mark.slow
def test_transfer_experiments_through_the_workflow(tmp_path):
    """`snakemake transfer`: one job per variant (source VAE partly retrained on the target), the
    unfreezing losses and grids, the cross-domain reconstructions; in every transfer checkpoint the
    frozen layers hold the source's weights exactly and the retrained ones do not."""
    import torch
    import yaml

    from vaetransfer.transfer import variant_layers

    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    config["training"]["sweeps"][0]["values"] = [1]
    config["transfer"] = {"pairs": [{"source": "symsol", "target": "dsprites"}], "seeds": [0], "steps": 4,
                          "unfreezing": {"levels": [1, 6], "n_examples": 32}}
    config["similarity"].update(transfer_pairs=[{"source": "symsol", "target": "dsprites"}], metrics=["cka"])
    config["downstream"] = {"pairs": [{"source": "symsol", "target": "dsprites"}], "seeds": [0],
                            "sample": "jan-mar-2023", "n_estimators": 10}
    config["similarity"]["families"] = ["cross_domain", "retrained_latents"]
    config["figures"] = {"fig5b": {"source": "symsol", "target": "dsprites"}}
    (tmp_path / "tr.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake("--configfile=tr.yaml", "transfer", "-n", "--quiet", "rules", cwd=tmp_path)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    assert counts["train_transfer"] == "9"  # latents + {inner, outer} x {1, 6} x {frozen, retrained}
    run_snakemake("--configfile=tr.yaml", "--cores", "2", "transfer", "results/tables/table1.parquet", "fig5b",
                  cwd=tmp_path)

    table = pd.read_parquet(tmp_path / "results/tables/unfreezing/symsol_to_dsprites/seed0.parquet")
    assert len(table) == 11 and set(table["model"]) >= {"target", "source", "latents", "inner6_latents"}
    assert table["heldout_loss"].gt(0).all() and (table["n_examples"] > 0).all()
    figures = tmp_path / "results/figures/unfreezing/symsol_to_dsprites/seed0"
    assert {p.name for p in figures.glob("*.png")} == {f"{o}_{l}.png" for o in ("inner", "outer") for l in ("frozen", "retrained")}
    assert (tmp_path / "results/figures/reconstructions/symsol_to_dsprites.png").stat().st_size > 10_000
    # The transferability report: one self-contained page and its numbers.
    html = (tmp_path / "results/reports/symsol_to_dsprites.html").read_text()
    assert "data:image/png;base64," in html and "How the recommendation was derived" in html
    summary = json.loads((tmp_path / "results/reports/symsol_to_dsprites.json").read_text())
    assert 0 <= summary["summary"]["trunk diagonal"] <= 1 and summary["reasons"]
    assert set(summary["retrain"]) <= {"encoder", "latent layers", "decoder"}
    assert "for classification" in " ".join(summary["reasons"])  # the report read Table 1

    # Fig. 5b: the retrained-latents model against the target-trained VAE, identified by its sidecar.
    # (fig5b reads its block's table only: the whole-plan similarity.parquet was never needed)
    assert not (tmp_path / "results/tables/similarity.parquet").exists()
    similarity = pd.read_parquet(tmp_path / "results/tables/similarity/retrained_latents/symsol_to_dsprites.parquet")
    latents = similarity[similarity["family"] == "retrained_latents"]
    assert len(latents) == 16 * 16  # one seed pair, CKA
    assert set(latents["source_dataset_x"]) == {"symsol"} and set(latents["retrained_x"]) == {"mean,log_var"}
    assert set(latents["dataset_x"]) == {"dsprites"} == set(latents["source_dataset_y"])
    assert set(latents["retrained_y"]) == {""}
    assert (tmp_path / "results/figures/fig5b.png").stat().st_size > 10_000

    # Downstream classification: one job and one row per label and encoder; Table 1 = their mean.
    per_label = pd.read_parquet(tmp_path / "results/tables/downstream_per_label.parquet")
    assert len(per_label) == 2 * 5 and set(per_label["label"]) == {"shape", "scale", "orientation", "pos_x", "pos_y"}
    assert set(per_label["role"]) == {"source", "target"} and per_label["test_accuracy"].between(0, 1).all()
    table1 = pd.read_parquet(tmp_path / "results/tables/table1.parquet").set_index("role")
    for role in ("source", "target"):
        expected = per_label[per_label["role"] == role]["test_accuracy"].mean()
        assert table1.loc[role, "test_accuracy"] == pytest.approx(expected)
    assert (tmp_path / "results/tables/table1.md").read_text().count("\n| ") >= 3

    source = torch.load(tmp_path / "results/models/symsol/conv/beta_vae/1/seed0/checkpoints/step20.pt", weights_only=True)
    for variant in ("latents", "inner1", "outer6_latents"):
        ckpt = torch.load(tmp_path / f"results/transfer/symsol_to_dsprites/{variant}/seed0/checkpoints/step4.pt",
                          weights_only=True)
        assert ckpt["config"]["dataset"] == "dsprites" and ckpt["config"]["retrain_layers"] == variant_layers(variant)
        retrained = {name.replace("/", "") for name in variant_layers(variant)}
        for key, value in source["state_dict"].items():
            assert torch.equal(value, ckpt["state_dict"][key]) == (key.split(".")[0] not in retrained), (variant, key)
