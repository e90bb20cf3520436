"""Time the README's main job: the embedded default (profiles/local) end to end, from nothing.

Usage: python benchmarks/quick_run.py [--keep DIR]
Runs `snakemake --profile profiles/local` in a scratch directory (so results/ of the checkout are
untouched) and prints a table: per rule, the number of jobs and their summed and longest wall
time, then the total elapsed time. The per-job times come from Snakemake's own log.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def job_durations(log: str) -> dict[str, list[float]]:
    """Per rule, the wall time of each job, from the [timestamp] / jobid / Finished lines."""
    started, durations, stamp, rule = {}, defaultdict(list), None, None
    for line in log.splitlines():
        if m := re.match(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$", line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := re.match(r"(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif m := re.match(r"\s+jobid: (\d+)", line):
            started[m.group(1)] = (rule, stamp)
        elif m := re.match(r"Finished jobid: (\d+)", line):
            r, t0 = started[m.group(1)]
            durations[r].append((stamp - t0).total_seconds())
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this directory and keep its results")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="vaetransfer-quick-"))
    work.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "config", work / "config", dirs_exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--profile", str(REPO / "profiles/local")]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=work, check=True, capture_output=True)
    total = time.perf_counter() - start
    log = max((work / ".snakemake/log").glob("*.log")).read_text()
    print(f"{'rule':<22}{'jobs':>6}{'sum s':>10}{'max s':>10}")
    for rule, times in job_durations(log).items():
        print(f"{rule:<22}{len(times):>6}{sum(times):>10.0f}{max(times):>10.0f}")
    print(f"{'total elapsed':<22}{'':>6}{total:>10.0f}")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
