import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(*args, cwd=REPO, check=True, timeout=900):
    """Run the real Snakemake CLI (the workflow is tested as users run it)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def load_config(path):
    """Read a config file and validate it the way the Snakefile does (schema defaults filled)."""
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load(Path(path).read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    return config


@pytest.fixture
def workdir(tmp_path):
    """A scratch working directory holding a copy of the configs (results/ go there)."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "tests" / "configs", tmp_path / "tests_configs")
    return tmp_path


@pytest.fixture(scope="module")
def cluster():
    """A private single-node SLURM cluster (tests/slurm_cluster.py) for one test module, stopped by
    PID afterwards; the test is skipped, with the reason, where SLURM cannot be started."""
    from .slurm_cluster import LocalSlurmCluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"cannot start a local SLURM cluster: {reason}")
    local = LocalSlurmCluster()
    try:
        local.start()
        yield local
    finally:
        local.stop()
        local.remove()
