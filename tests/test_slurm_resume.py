"""A training job killed by SLURM resumes from its last saved state on the next attempt.

One training run goes through `snakemake --profile profiles/slurm` (plus the test cluster's
overrides, tests/slurm/profile) on the local single-node cluster of tests/slurm_cluster.py. Once
SLURM shows the job RUNNING and the run's log shows it past its first checkpoint, the job is
cancelled with a plain `scancel <jobid>`; the same command is then run again and must finish the
run from the saved step. The finished run must equal, bit for bit, an uninterrupted in-process
`vaetransfer.train.train` of the same config at the same torch thread count.

What reaches the training script on `scancel`: SIGTERM, checked here from the script's own log
("stopped by signal 15"), and by hand with `scancel --signal=TERM` and `--signal=TERM --full` too.
Inside the allocation the job is `sbatch` -> jobstep Snakemake -> `srun` -> step 0: Snakemake ->
`python <script>`. On cancel slurmd has every step's slurmstepd send SIGCONT and SIGTERM to all
processes of its step (proctrack/linuxproc: the step's process tree; proctrack/cgroup: its cgroup),
then SIGKILL after KillWait (default 30 s); SLURM does the same at a job's time limit (not run here:
it takes minutes). So the script gets SIGTERM directly, not through Snakemake: the inner
Snakemake's SIGTERM handler only sets a flag ("Will exit after finishing currently running jobs",
snakemake/scheduling/job_scheduler.py) and waits for the script. The batch step's `srun` answers
its own SIGTERM with "forcing job termination", yet a step process that handles SIGTERM was seen
to live on 15 s after it (a probe job), so the state is saved well within KillWait. Hence
resume.py's handler saves the state and raises StopRequested, and no fix in the script,
resume.py or the profile was needed. Plain scancel leaves the job CANCELLED; `--signal=TERM`
(with or without `--full`) only signals it: the script saves and stops, and the job ends FAILED.

The first command runs with `--retries 0`, so the cancelled job ends the run and the second,
identical command is the next attempt. (With the profile's `retries: 2` Snakemake would itself
resubmit the cancelled job, and that attempt would resume the same way; not exercised here.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from vaetransfer.data.store import load_images, load_meta, split_indices
from vaetransfer.train import TrainConfig, train

from .conftest import REPO, SNAKEMAKE
from .test_slurm import OVERRIDES, PROFILE, rule_of

STEPS = 600  # ~12 s at 50 steps/s on 2 CPUs: long enough to cancel mid-run, short enough to redo
CHECKPOINTS = [40, STEPS]
RESUME_EVERY = 20
CANCEL_AFTER = 60  # cancel once a state past the first checkpoint is saved
RUN = "dsprites/conv/beta_vae/1/seed0"
CONFIG = {
    "datasets": {
        "dsprites": {
            "source": "procedural",
            "generator": "dsprites",
            "options": {"factor_indices": {
                "scale": [0, 5], "orientation": [0, 10, 20, 30], "pos_x": [0, 10, 20, 31], "pos_y": [0, 15, 31],
            }},
        },
    },
    "training": {
        "sweeps": [{"objective": "beta_vae", "values": [1], "datasets": ["dsprites"]}],
        "seeds": [0],
        "steps": STEPS,
        "checkpoint_steps": CHECKPOINTS,
        "batch_size": 16,
        "resume_every": RESUME_EVERY,
        "device": "cpu",
    },
    "similarity": {"metrics": ["cka"], "n_examples": 48, "families": ["learning_dynamics"]},
    "figures": {},
}
MODEL_DIR = Path("results/models") / RUN
TARGET = str(MODEL_DIR / "losses.parquet")
RULE_LOG = Path("results/logs/train_vae") / f"{RUN}.log"
RUN_TIMEOUT = 300


def start_snakemake(work: Path, env: dict, name: str) -> tuple[subprocess.Popen, Path]:
    """The command users run: profiles/slurm (+ the test cluster's overrides), one target."""
    out = work / f"{name}.out"
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--profile", str(PROFILE),
           "--workflow-profile", str(OVERRIDES), "--retries", "0", TARGET]
    with open(out, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=work, stdout=fh, stderr=subprocess.STDOUT,
                                env={**env, "PYTHONWARNINGS": "ignore"})
    return proc, out


def stop(proc: subprocess.Popen) -> None:
    """End a Snakemake that is still running: SIGINT makes it scancel its jobs, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen, out: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"snakemake exited ({proc.returncode}) while waiting for {what}:\n{out.read_text()[-6000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{out.read_text()[-6000:]}")


def finish(proc: subprocess.Popen, out: Path, timeout: float = RUN_TIMEOUT) -> str:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        pytest.fail(f"snakemake still running after {timeout} s:\n{out.read_text()[-6000:]}")
    return out.read_text()


def train_jobs(cluster) -> dict[str, dict]:
    return {r["JobId"]: r for r in cluster.jobs() if rule_of(r)[0] == "train_vae"}


def saved_steps(log: str) -> list[int]:
    return [int(s) for s in re.findall(r"saved resume state at step (\d+)", log)]


def first_bar(log: str) -> int:
    """The step the first tqdm render of the run showed (`initial=` of the bar)."""
    match = re.search(rf"\| *(\d+)/{STEPS} \[", log)
    assert match, f"no progress bar in the training log:\n{log[:2000]}"
    return int(match.group(1))


def slurm_log(work: Path, job_id: str) -> str:
    logs = list((work / ".snakemake/slurm_logs/rule_train_vae").rglob(f"{job_id}.log"))
    assert logs, f"no SLURM log for job {job_id}"
    return logs[0].read_text()


def job_threads(text: str) -> int:
    """The threads the job's own Snakemake gave the rule (it prints `threads:` only above 1); the
    script passes them to torch.set_num_threads, and CPU results depend on the thread count."""
    block = text.split("localrule train_vae:", 1)
    assert len(block) == 2, f"no inner `localrule train_vae` block in the SLURM log:\n{text[-3000:]}"
    match = re.search(r"^\s+threads: (\d+)$", block[1].split("Shell command", 1)[0], re.M)
    return int(match.group(1)) if match else 1


def assert_same(a, b, where: str) -> None:
    """Bit-identical nested checkpoint contents (tensors compared with torch.equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def reference_run(work: Path, config: TrainConfig, threads: int, root: Path) -> dict[int, Path]:
    """The same run, uninterrupted and without any resume machinery, in this process."""
    data_dir = work / "results/data/dsprites"
    meta = load_meta(data_dir)
    train_idx, _ = split_indices(meta["n"], config.seed, config.validation_fraction)  # as train_vae.py
    paths = {step: root / f"step{step}.pt" for step in config.checkpoint_steps}
    before = torch.get_num_threads()
    try:
        train(config, load_images(data_dir), train_idx, paths, root / "losses.parquet", progress=False, threads=threads)
    finally:
        torch.set_num_threads(before)
    return paths


def leftover_processes(work: Path) -> list[str]:
    """Processes (other than this one) whose command line names the scratch directory."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(work) in cmdline and state not in ("Z", "X"):
            found.append(f"{proc_dir.name}: {cmdline[:200]}")
    return found


@pytest.mark.slurm
@pytest.mark.slow
def test_cancelled_training_job_resumes_from_its_saved_state(cluster, tmp_path):
    start = time.perf_counter()
    work = tmp_path / "work"
    (work / "config").mkdir(parents=True)
    (work / "config/config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    model_dir, rule_log = work / MODEL_DIR, work / RULE_LOG

    # ---- attempt 1: cancel the training job once it has saved a state past its first checkpoint
    proc, out = start_snakemake(work, cluster.env, "attempt1")
    try:
        job_id = wait_for(
            lambda: next((j for j, r in train_jobs(cluster).items() if r["JobState"] == "RUNNING"), None),
            RUN_TIMEOUT, "the train_vae job to be RUNNING", proc, out,
        )
        wait_for(
            lambda: rule_log.exists() and max(saved_steps(rule_log.read_text()), default=0) >= CANCEL_AFTER,
            RUN_TIMEOUT, f"a resume state at step >= {CANCEL_AFTER}", proc, out,
        )
        assert not (model_dir / "checkpoints" / f"step{STEPS}.pt").exists(), "training finished before it could be cancelled"
        cluster.run("scancel", job_id)
        text = finish(proc, out)
    finally:
        stop(proc)
    assert proc.returncode != 0, text[-4000:]
    # SLURM's own record: cancelled, not failed or completed.
    record = train_jobs(cluster)[job_id]
    assert record["JobState"] == "CANCELLED", record
    assert f"SLURM-job '{job_id}' failed, SLURM status is: 'CANCELLED'" in text, text[-4000:]
    first_slurm_log = slurm_log(work, job_id)
    assert re.search(rf"\*\*\* JOB {job_id} ON \S+ CANCELLED AT", first_slurm_log), first_slurm_log[-3000:]
    # The script got SIGTERM (15) itself, saved its state on it and stopped between two steps.
    first_log = rule_log.read_text()
    stopped = re.search(r"StopRequested: stopped by signal (\d+) after step (\d+)", first_log)
    assert stopped, f"the training script never saw a stop signal:\n{first_log[-3000:]}"
    assert int(stopped.group(1)) == signal.SIGTERM
    saved = int(stopped.group(2))
    assert CANCEL_AFTER <= saved < STEPS
    assert saved_steps(first_log)[-1] == saved  # the last save was the one on SIGTERM
    assert first_bar(first_log) == 0
    state = torch.load(model_dir / "resume/state.pt", map_location="cpu", weights_only=False)
    assert state["step"] == saved
    assert state["loss_rows"]["steps"] == list(range(1, saved + 1))
    # Snakemake removed the failed job's outputs, the early checkpoint too (why resume.py keeps a
    # hard link to every checkpoint written): attempt 2 must put it back from the resume dir.
    assert not (model_dir / "checkpoints" / f"step{CHECKPOINTS[0]}.pt").exists()
    assert (model_dir / "resume" / f"step{CHECKPOINTS[0]}.pt").exists()
    assert not (model_dir / "checkpoints" / f"step{STEPS}.pt").exists() and not (model_dir / "losses.parquet").exists()
    cancelled = time.perf_counter()

    # ---- attempt 2: the same command again; it carries on from the saved step
    known = set(train_jobs(cluster))
    proc, out = start_snakemake(work, cluster.env, "attempt2")
    try:
        text = finish(proc, out)
    finally:
        stop(proc)
    assert proc.returncode == 0, text[-6000:]
    new = {j: r for j, r in train_jobs(cluster).items() if j not in known}
    assert [r["JobState"] for r in new.values()] == ["COMPLETED"], new
    second_log = rule_log.read_text()
    assert f"resuming from step {saved} " in second_log, second_log[:3000]
    assert first_bar(second_log) == saved  # tqdm starts at initial=saved, not 0
    assert all(step > saved for step in saved_steps(second_log)), "steps before the saved one were redone"
    for step in CHECKPOINTS:
        assert (model_dir / "checkpoints" / f"step{step}.pt").exists(), step
    assert not (model_dir / "resume").exists()  # cleared once finished: a forced re-run starts over
    losses = pd.read_parquet(model_dir / "losses.parquet")
    assert losses["step"].tolist() == list(range(1, STEPS + 1))
    resumed = time.perf_counter()

    # ---- the resumed run equals an uninterrupted one, bit for bit (CPU, same thread count)
    threads = {job_threads(first_slurm_log), job_threads(slurm_log(work, next(iter(new))))}
    assert len(threads) == 1, threads
    final = torch.load(model_dir / "checkpoints" / f"step{STEPS}.pt", map_location="cpu", weights_only=False)
    config = TrainConfig.from_dict(final["config"])
    assert (config.steps, config.checkpoint_steps, config.batch_size, config.device) == (STEPS, CHECKPOINTS, 16, "cpu")
    threads = threads.pop()
    reference = reference_run(work, config, threads, tmp_path / "reference")
    for step, path in reference.items():
        expected = torch.load(path, map_location="cpu", weights_only=False)
        got = torch.load(model_dir / "checkpoints" / f"step{step}.pt", map_location="cpu", weights_only=False)
        assert_same(got, expected, f"step{step}.pt")
    pd.testing.assert_frame_equal(losses, pd.read_parquet(tmp_path / "reference/losses.parquet"), check_exact=True)

    assert not leftover_processes(work), leftover_processes(work)
    print(f"\njob {job_id} cancelled at step {saved}: attempt 1 {cancelled - start:.0f} s, attempt 2 "
          f"{resumed - cancelled:.0f} s, reference run ({threads} threads) {time.perf_counter() - resumed:.0f} s")
