"""profiles/slurm as users run it: `snakemake --profile profiles/slurm` against a real SLURM.

The `slurm` tests bring up a single-node cluster from Debian's slurmctld/slurmd/munge
(tests/slurm_cluster.py: partitions cpu and gpu, one count-only a100 GPU), run the tiny config
through the profile plus the local cluster's overrides (tests/slurm/profile), and check placement
from SLURM's own records: `scontrol -d show job` (partition, allocated GRES, state, memory) and the
environment each job step saw (TaskProlog). They skip only where SLURM cannot be started (packages
missing: .ci/install-slurm; not root). Every daemon is stopped by PID when the module ends.

The other tests here need no cluster: the paper-scale plan with the SLURM profile, and the profile's
GPU routing against the rules that ask for a GPU.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pandas as pd
import pytest
import yaml

from vaetransfer import plan, sharding

from .conftest import REPO, SNAKEMAKE, load_config

PROFILE = REPO / "profiles/slurm"
OVERRIDES = REPO / "tests/slurm/profile"
TINY = REPO / "tests/configs/tiny.yaml"
GPU_RULES = {"train_vae", "dump_activations"}
CPU_RULES = {"prepare_dataset", "score_shard", "aggregate_similarity"}
# One cross-domain shard: data, training, activation dumps and scoring, 11 SLURM jobs instead of the
# whole tiny sweep's 28 (the CI machine has 2 cores and the one fake GPU runs one job at a time).
SHARD = ("cross_domain", 0)
TARGETS = [f"results/similarity/{SHARD[0]}/dsprites_to_symsol/shard{SHARD[1]}.parquet"]
RUN_TIMEOUT = 900


def snakemake(work, *args, env=None, timeout=RUN_TIMEOUT):
    """The real CLI with the SLURM profile (and, for the test cluster, its overrides)."""
    env = {**(env or os.environ), "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--profile", str(PROFILE), *args],
        cwd=work, capture_output=True, text=True, timeout=timeout, env=env,
    )


def rule_counts(output: str) -> dict[str, int]:
    """Per-rule job counts of a `-n --quiet rules` dry run."""
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", output, flags=re.M) if rule != "total"}


def rule_of(record: dict[str, str]) -> tuple[str, str]:
    """(rule, wildcards) of a SLURM job, from the comment the plugin gives every submission."""
    match = re.fullmatch(r"rule_(.+?)(?:_wildcards_(.*))?", record.get("Comment", ""))
    assert match, f"SLURM job {record['JobId']} has no Snakemake rule comment: {record.get('Comment')}"
    return match.group(1), match.group(2) or ""


# --------------------------------------------------------------------------- no cluster needed


def test_paper_scale_dry_run_with_the_slurm_profile(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    start = time.perf_counter()
    proc = snakemake(tmp_path, "-n", "--quiet", "rules", timeout=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert elapsed < 60, f"dry run took {elapsed:.0f} s"
    counts = rule_counts(proc.stdout)
    assert sum(counts.values()) < 20_000
    # Scoring is batched at parse time: one job per shard of `pairs_per_shard` snapshot pairs.
    paper = load_config(REPO / "config/config.yaml")
    pairs = sum(len(plan.comparisons(paper, f)) for f in plan.families(paper))
    assert counts["score_shard"] == sum(sharding.shard_count(paper, f) for f in plan.families(paper))
    assert counts["score_shard"] <= pairs / 4
    assert counts["train_vae"] == len(plan.runs(paper)) == 435
    # The real datasets' original files (dSprites 1, Cars3D 1, SmallNORB 6, Symsol 1, CelebA 2).
    assert counts["download"] == 11


def test_every_gpu_rule_goes_to_the_gpu_partition_with_an_a100():
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    rules_text = "\n".join(p.read_text() for p in sorted((REPO / "workflow/rules").glob("*.smk")))
    blocks = re.split(r"^rule (\w+):", rules_text, flags=re.M)[1:]
    gpu_rules = {name for name, body in zip(blocks[::2], blocks[1::2]) if re.search(r"^\s+gpu=", body, re.M)}
    assert GPU_RULES <= gpu_rules
    routed = profile["set-resources"]
    for rule in gpu_rules:
        assert routed.get(rule, {}).get("slurm_partition") == "gpu", rule
        assert routed[rule].get("gpu_model") == "a100", rule
    # Everything else falls back to the CPU partition; rules never name partitions themselves.
    assert profile["default-resources"]["slurm_partition"] == "cpu"
    assert "slurm_partition" not in rules_text and "gpu_model" not in rules_text


def test_both_profiles_plan_the_same_jobs(tmp_path):
    # Same config, same outputs: the profiles change where jobs run, never what they make.
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copy(TINY, tmp_path / "config/config.yaml")
    slurm = snakemake(tmp_path, "-n", "--quiet", "rules", "--configfile", "config/config.yaml", timeout=120)
    local = subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--profile", str(REPO / "profiles/local"),
         "--configfile", "config/config.yaml", "-n", "--quiet", "rules"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert slurm.returncode == 0 and local.returncode == 0, slurm.stderr[-2000:] + local.stderr[-2000:]
    assert rule_counts(slurm.stdout) == rule_counts(local.stdout)


# ------------------------------------------------------------------------------ real SLURM


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The tiny config (--configfile) through profiles/slurm on the test cluster, in a scratch
    working directory that also holds the paper-scale config/config.yaml: every SLURM job must see
    the tiny config alone, not the paper's merged with it."""
    work = tmp_path_factory.mktemp("slurm")
    shutil.copytree(REPO / "config", work / "config")
    # Activation dumps are kept (similarity.keep_activations), so that the failure test below can
    # break one and repair it; by default they are temp() and gone once scored.
    config = yaml.safe_load(TINY.read_text())
    config["similarity"]["keep_activations"] = True
    (work / "tiny.yaml").write_text(yaml.safe_dump(config))
    tiny = ("--configfile=tiny.yaml",)
    plan_proc = snakemake(work, *tiny, *TARGETS, "-n", "--quiet", "rules", timeout=120)
    assert plan_proc.returncode == 0, plan_proc.stderr[-4000:]
    start = time.perf_counter()
    proc = snakemake(work, *tiny, "--workflow-profile", str(OVERRIDES), *TARGETS, env=cluster.env)
    elapsed = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"SLURM run failed after {elapsed:.0f} s:\n{out[-8000:]}\n{cluster.logs()}"
    return {"work": work, "out": out, "planned": rule_counts(plan_proc.stdout), "jobs": cluster.jobs(),
            "env": cluster.job_env(), "seconds": elapsed}


@pytest.mark.slurm
@pytest.mark.slow
def test_training_on_gpu_partition_with_a_gpu_scoring_on_cpu(slurm_run):
    jobs, env, work = slurm_run["jobs"], slurm_run["env"], slurm_run["work"]
    by_rule: dict[str, list[dict]] = {}
    for record in jobs:
        by_rule.setdefault(rule_of(record)[0], []).append(record)
    # Every planned cluster job went through SLURM exactly once; local rules stayed local.
    planned = {rule: n for rule, n in slurm_run["planned"].items() if rule != "evaluation_sample"}
    assert {rule: len(records) for rule, records in by_rule.items()} == planned
    assert {"train_vae", "dump_activations", "score_shard"} <= set(by_rule)
    for rule, records in by_rule.items():
        for record in records:
            job_id = record["JobId"]
            steps = env.get(job_id)
            assert record["JobState"] == "COMPLETED", record
            assert steps, f"job {job_id} ({rule}) left no TaskProlog record"
            if rule in GPU_RULES:
                # Scheduled on gpu with one a100 allocated (JOB_GRES), and the job saw it.
                assert record["Partition"] == "gpu", record
                assert "gpu:a100:1" in record.get("TresPerJob", ""), record
                assert record["JOB_GRES"].startswith("gpu:a100:1"), record
                assert all(s["partition"] == "gpu" and s["cuda_visible_devices"] == "0" for s in steps), steps
                assert any(s["job_gpus"] == "0" for s in steps), steps
            else:
                assert rule in CPU_RULES, rule
                assert record["Partition"] == "cpu", record
                assert record["JOB_GRES"] == "(null)" and "gpu" not in record.get("TresPerJob", ""), record
                assert all(s["partition"] == "cpu" and not s["cuda_visible_devices"] for s in steps), steps
            # SLURM's log of a successful job is kept (slurm-keep-successful-logs).
            assert list((work / ".snakemake/slurm_logs").rglob(f"{job_id}.log")), job_id
    # Status came from squeue (no accounting here), never from a hanging sacct.
    assert "Falling back to 'sacct'" not in slurm_run["out"]
    tiny = load_config(TINY)
    table = pd.read_parquet(work / TARGETS[0])
    assert len(table) == len(sharding.shard(tiny, *SHARD)) * 16 * 16 * len(tiny["similarity"]["metrics"])
    print(f"SLURM run: {len(jobs)} jobs in {slurm_run['seconds']:.0f} s")


@pytest.mark.slurm
@pytest.mark.slow
def test_failed_job_reports_slurm_state_and_log_and_rerun_resumes(slurm_run, cluster):
    work = slurm_run["work"]
    tiny = load_config(TINY)
    # Break one input of the cross-domain shard (a failure inside the job, as a bug would be).
    snapshot = work / sharding.shard(tiny, *SHARD)[0][1].activations
    original, stat = snapshot.read_bytes(), snapshot.stat()
    snapshot.write_bytes(b"not an npz archive")
    known = {r["JobId"] for r in cluster.jobs()}
    proc = snakemake(work, "--configfile=tiny.yaml", "--workflow-profile", str(OVERRIDES), "--retries", "1", *TARGETS,
                     env=cluster.env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    new = [r for r in cluster.jobs() if r["JobId"] not in known]
    # Only the shard that reads the broken file ran, twice (one retry), and failed both times.
    assert [rule_of(r) for r in new] == [("score_shard", "cross_domain_dsprites_to_symsol_0")] * 2, new
    assert [r["JobState"] for r in new] == ["FAILED", "FAILED"]
    memory = [int(r["MinMemoryNode"].rstrip("M")) for r in sorted(new, key=lambda r: int(r["JobId"]))]
    assert memory[1] == 2 * memory[0], memory  # the retry asked for attempt x memory
    # The failure names the SLURM job, its SLURM state and the SLURM log, which exists and holds
    # the job's output.
    for record in new:
        assert f"SLURM-job '{record['JobId']}' failed, SLURM status is: 'FAILED'" in out
        log = re.search(rf"(\S*/\.snakemake/slurm_logs/rule_score_shard/\S*/{record['JobId']}\.log)", out)
        assert log, f"no SLURM log path for job {record['JobId']} in:\n{out[-4000:]}"
        assert "Error in rule score_shard" in open(log.group(1)).read()
    assert "results/logs/score_shard/cross_domain/dsprites_to_symsol/shard0.log" in out

    # Repair the input (same bytes, same time stamp) and re-run: only the failed job runs again.
    snapshot.write_bytes(original)
    os.utime(snapshot, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    known = {r["JobId"] for r in cluster.jobs()}
    proc = snakemake(work, "--configfile=tiny.yaml", "--workflow-profile", str(OVERRIDES), *TARGETS, env=cluster.env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    new = [r for r in cluster.jobs() if r["JobId"] not in known]
    assert [(rule_of(r), r["JobState"], r["Partition"]) for r in new] == [
        (("score_shard", "cross_domain_dsprites_to_symsol_0"), "COMPLETED", "cpu")
    ]
    assert (work / TARGETS[0]).exists()
    done = snakemake(work, "--configfile=tiny.yaml", "-n", *TARGETS, timeout=120)
    assert "Nothing to be done" in done.stdout + done.stderr
