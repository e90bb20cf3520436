"""Peak memory of CelebA preprocessing (vaetransfer.data.real.celeba), measured on synthetic JPEGs.

Usage: python benchmarks/celeba_memory.py [--n 20000] [--distinct 256] [--workdir DIR] [--keep]

Writes ``img_align_celeba.zip`` with N synthetic 178×218 JPEGs (``--distinct`` different seeded
gradient+noise images, ~11 KiB each where the real ones average 7 KB, repeated under the real
file names 000001.jpg …; no CelebA pixels) and a matching ``list_attr_celeba.txt``, then runs
``preprocess("celeba", …)`` in a child process that samples /proc/self/status every 50 ms. Prints
the child's peak VmRSS (= ru_maxrss; it counts the file-backed pages of the memory-mapped images),
its peak anonymous RSS (the heap: what cannot be reclaimed), wall time and the output size.
The spec target: under 4 GiB at the full N = 202,599 (``--n 202599``: 2.3 GiB output, 2.2 GiB zip, ~4 min here).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures_real_b
from tests.fixtures_real_b import (  # noqa: E402
    attribute_text,
    celeba_attributes,
    celeba_pixels,
    jpeg_bytes,
)

CHILD = """
import json, resource, sys, threading, time
from vaetransfer.data.real import preprocess
peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
done = threading.Event()
def sample():
    while not done.is_set():
        with open("/proc/self/status") as fh:
            for line in fh:
                key = line.split(":")[0]
                if key in peak:
                    peak[key] = max(peak[key], int(line.split()[1]))
        time.sleep(0.05)
thread = threading.Thread(target=sample, daemon=True)
thread.start()
files, out, scratch = json.loads(sys.argv[1])
t = time.perf_counter()
preprocess("celeba", files, out, scratch)
seconds = time.perf_counter() - t
done.set(); thread.join()
print(json.dumps({"seconds": seconds, "peak_kib": peak,
                  "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def make_inputs(directory: Path, n: int, distinct: int) -> dict[str, str]:
    jpegs = [jpeg_bytes(celeba_pixels(i)) for i in range(1, distinct + 1)]
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    zip_path = directory / "img_align_celeba.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, name in enumerate(names):
            zf.writestr(f"img_align_celeba/{name}", jpegs[i % distinct])
    attr_path = directory / "list_attr_celeba.txt"
    attr_path.write_text(attribute_text(names, celeba_attributes(n)))
    print(f"inputs: {n} JPEGs (mean {np.mean([len(j) for j in jpegs]) / 1024:.1f} KiB), "
          f"zip {zip_path.stat().st_size / 2**20:.0f} MiB, attributes {attr_path.stat().st_size / 2**20:.1f} MiB")
    return {"img_align_celeba.zip": str(zip_path), "list_attr_celeba.txt": str(attr_path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--distinct", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the inputs and output")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="celeba_memory_", dir=args.workdir))
    try:
        t = time.perf_counter()
        files = make_inputs(work, args.n, args.distinct)
        print(f"synthesised in {time.perf_counter() - t:.0f} s")
        out, scratch = work / "out", work / "scratch"
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps([files, str(out), str(scratch)])],
                              check=True, capture_output=True, text=True)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        peak = {k: v / 2**20 for k, v in result["peak_kib"].items()}
        size = (out / "images.npy").stat().st_size / 2**30
        print(f"N = {args.n}: preprocess {result['seconds']:.0f} s ({1e3 * result['seconds'] / args.n:.2f} ms/image), "
              f"images.npy {size:.2f} GiB")
        print(f"peak RSS {result['ru_maxrss_kib'] / 2**20:.2f} GiB (sampled VmRSS {peak['VmRSS']:.2f}, "
              f"RssAnon {peak['RssAnon']:.2f}, RssFile {peak['RssFile']:.2f} GiB)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
