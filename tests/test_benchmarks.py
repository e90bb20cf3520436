"""The prepared GPU check runs as a device call would run it (here on CPU at toy sizes).

Device time is scarce (a few minutes per session, when lent at all): a script that breaks there
wastes it. Its numbers are not checked here (benchmarks/README.md holds measurements).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_device_check_script_runs_every_part(tmp_path):
    env = {**os.environ, "DEVICE": "cpu", "SMOKE": "1", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    exits = dict(re.findall(r"^== (\w+): exit (\d+)", proc.stdout, flags=re.M))
    assert exits == {"tests": "0", "train": "0", "stacked": "0", "similarity": "0"}, proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "env.txt", "similarity.txt", "stacked.txt", "tests.txt", "train.txt"]
    train = (tmp_path / "train.txt").read_text()
    # every VAE architecture has both loops, with the floor columns
    assert re.search(r"^conv\s+1\s+vaetransfer\s", train, flags=re.M), train
    assert re.search(r"^fc\s+1\s+plain\s", train, flags=re.M), train
    assert "floor ms" in train
    assert "cka block 2x16" in (tmp_path / "similarity.txt").read_text()
