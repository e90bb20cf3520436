"""Peak memory of one score_shard job at paper scale (n = 5000), measured, not estimated.

Usage: python benchmarks/shard_memory.py [--n 5000] [--memory-mb 2000] [--metrics cka,procrustes]
                                         [--prepare-only]

Writes two activation dumps of a randomly initialised conv VAE (dSprites widths, 2 GB each at
n = 5000) to a temporary directory, then scores the shard {(x, x), (x, y)} in a child process,
exactly as the workflow's score_shard job does (vaetransfer.scoring.score_pairs, spilling beyond
--memory-mb), and prints the child's peak resident memory (ru_maxrss) next to the cost model's
figure (vaetransfer.sharding.shard_resources). --prepare-only stops after preparing both snapshots:
the phase with the largest working set (a Procrustes block at n = 5000 takes ~20 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = """
import json, sys, time, resource, contextlib
import torch
torch.set_num_threads(2)
from vaetransfer import scoring
args = json.loads(sys.argv[1])
t = time.perf_counter()
if args["prepare_only"]:
    with contextlib.ExitStack() as stack:
        store = scoring._Store(tuple(args["metrics"]), "cpu", False, args["memory_mb"], args["scratch"], stack)
        for path in args["paths"]:
            store.load(path)
else:
    scoring.score_pairs(args["pairs"], args["metrics"], "benchmark", memory_mb=args["memory_mb"],
                        scratch=args["scratch"])
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def write_dumps(directory: Path, n: int) -> list[str]:
    import torch

    from vaetransfer.activations import compute_activations, save_activations
    from vaetransfer.models import ConvVAE

    rng = np.random.default_rng(0)
    images = ((rng.random((n, 64, 64, 1)) > 0.85) * 255).astype(np.uint8)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        arrays = compute_activations(ConvVAE(1), images, seed=seed)
        meta = {"model": {"dataset": "dsprites", "objective": "beta_vae", "hparam_name": "beta",
                          "hparam": 1.0, "seed": seed, "step": 1},
                "eval_dataset": "dsprites", "example_indices": list(range(n))}
        path = directory / f"seed{seed}.npz"
        save_activations(path, arrays, meta)
        paths.append(str(path))
        del arrays
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--memory-mb", type=int, default=2000)
    parser.add_argument("--metrics", default="cka,procrustes")
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    metrics = args.metrics.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_dumps(Path(tmp), args.n)
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()
        spec = {"pairs": [[paths[0], paths[0]], [paths[0], paths[1]]], "paths": paths,
                "metrics": metrics, "memory_mb": args.memory_mb, "scratch": str(scratch),
                "prepare_only": args.prepare_only}
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True,
                             text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])

    from vaetransfer import plan, sharding

    config = {"similarity": {"n_examples": args.n, "metrics": metrics, "memory_mb": args.memory_mb},
              "datasets": {"dsprites": {"source": "procedural", "generator": "dsprites"}}}
    snap = lambda seed: plan.Snapshot(plan.Run("dsprites", "conv", "beta_vae", 1.0, seed), 1, "dsprites")  # noqa: E731
    model = sharding.shard_resources(config, [(snap(0), snap(0)), (snap(0), snap(1))])["mem_mb"] / 1024
    phase = "prepare both snapshots" if args.prepare_only else "score the shard"
    print(f"| n | metrics | memory_mb | phase | seconds | peak RSS (GiB) | cost model mem (GiB) |")
    print(f"|---|---|---|---|---|---|---|")
    print(f"| {args.n} | {args.metrics} | {args.memory_mb} | {phase} | {result['seconds']:.0f} | "
          f"{result['peak_gib']:.2f} | {model:.2f} |")


if __name__ == "__main__":
    main()
