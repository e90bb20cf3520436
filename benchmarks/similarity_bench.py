"""Timing of vaetransfer.similarity on random data with the conv VAE's layer widths.

Usage: python benchmarks/similarity_bench.py [--n 500 1000]

Prints one row per (method, n): single CKA / Procrustes pairs on the widest layers (p = 32768,
e/1 vs d/5), and `score_layer_pairs` over all 16 x 16 layer pairs of two models x, y (and of x with
itself, where only the upper triangle is computed); those rows include preparing every layer.
Each row is one run. Timings vary 3-5x between runs on shared 2-core machines (spec reference.md
§10): compare rows of one run, not across runs. BLAS runs single-threaded unless
OPENBLAS_NUM_THREADS is set (see the comment at the imports); about 1 minute in all then.
"""

from __future__ import annotations

import argparse
import os
import time

# Single-threaded BLAS unless the caller says otherwise: on the shared 2-core machines, 2-thread
# OpenBLAS eigensolvers ran 3-100x slower than 1 thread (must be set before numpy is imported).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from vaetransfer.layers import LAYER_NAMES  # noqa: E402
from vaetransfer.similarity import linear_cka, procrustes_similarity, score_layer_pairs  # noqa: E402

# Flattened widths of the 16 recorded layers for a 1-channel 64x64 input (reference.md §1.4).
CONV_WIDTHS = dict(
    zip(
        LAYER_NAMES,
        [4096, 32768, 8192, 4096, 1024, 1024, 256, 10, 10, 10, 256, 1024, 4096, 8192, 32768, 4096],
    )
)


BOTH = ["cka", "procrustes"]


def random_model(rng: np.random.Generator, n: int, rank: int = 16) -> dict[str, np.ndarray]:
    """Float32 activations sharing a low-rank signal across layers, plus noise (like a real net)."""
    latent = rng.standard_normal((n, rank), dtype=np.float32)
    return {
        name: latent @ rng.standard_normal((rank, p), dtype=np.float32)
        + rng.standard_normal((n, p), dtype=np.float32)
        for name, p in CONV_WIDTHS.items()
    }


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(n: int, rng: np.random.Generator) -> list[tuple[str, int, str, float]]:
    x, y = random_model(rng, n), random_model(rng, n)
    wide, layers = "32768 x 32768", "16 layers (conv widths)"
    cases = [
        ("linear_cka, one pair (e/1 vs d/5)", wide, lambda: linear_cka(x["e/1"], y["d/5"])),
        ("procrustes_similarity, one pair", wide, lambda: procrustes_similarity(x["e/1"], y["d/5"])),
        ("score_layer_pairs cka, x vs y", layers, lambda: score_layer_pairs(x, y, ["cka"])),
        ("score_layer_pairs cka+procrustes, x vs y", layers, lambda: score_layer_pairs(x, y, BOTH)),
        ("score_layer_pairs cka+procrustes, x vs x", layers, lambda: score_layer_pairs(x, x, BOTH)),
    ]
    return [(label, n, p, seconds(fn)) for label, p, fn in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[500, 1000], help="numbers of examples")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [row for n in args.n for row in bench(n, rng)]
    # BLAS threading decides these timings on a busy machine: record it with the table.
    threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"
    print(f"cpus={os.cpu_count()} blas_threads={threads} load_average={os.getloadavg()[0]:.1f}")
    width = max(len(r[0]) for r in rows)
    print(f"| {'method':<{width}} | {'n':>5} | {'p':<23} | {'seconds':>8} |")
    print(f"|{'-' * (width + 2)}|{'-' * 7}|{'-' * 25}|{'-' * 10}|")
    for method, n, p, secs in rows:
        print(f"| {method:<{width}} | {n:>5} | {p:<23} | {secs:>8.3f} |")


if __name__ == "__main__":
    main()
