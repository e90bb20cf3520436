"""Similarity engine benchmark: one process, one run, engine vs naive per-pair recipes vs GEMM floor.

Usage: python benchmarks/similarity.py [--device cpu|cuda] [--threads 2] [--skip-procrustes-5000]
                                       [--naive-budget S] [--smoke]

``--smoke`` runs every section at toy sizes (n = 200/100/200, widths up to 1024) to check the script
itself, e.g. benchmarks/device_check.sh before spending GPU time on it; its numbers mean nothing.

Sections (issue "Similarity engine at paper scale", §7):
  (a) one pair at n = 5000 for each conv-VAE layer width (10 ... 32768), CKA and Procrustes, each
      timing including the preparation of both representations;
  (b) the all-pairs block of 2 snapshots x 16 representations (528 unordered pairs) at n = 1000,
      engine vs the naive per-pair recipe (centred Grams rebuilt per pair and a flat dot product;
      Procrustes by SVD of the p x q product X^T Y) in this process. A naive case whose estimate
      exceeds a minute is timed on a few pairs and extrapolated (said so in its row);
  (c) the same block at n = 5000, engine only.
Floors: the engine's FLOPs (vaetransfer.costmodel's counts for this block, eigensolvers at their
nominal LAPACK counts) divided by GEMM rates measured here at the engine's shapes (float32 for CKA
Grams and dots, float64 for Procrustes; eigensolver FLOPs at the float64 GEMM rate, which their
memory-bound tridiagonalisation cannot reach: this floor is not reachable). Peak memory is the
process RSS sampled every 20 ms during a row, minus the RSS before it.

Activations are those of two randomly initialised conv VAEs (seeds 0, 1) on random sparse 64x64
images: realistic widths and full-rank wide layers. Timings of about a second vary 3-5x between
runs on shared 2-core machines: compare rows of one run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import threading
import time

import numpy as np
import torch

from gemm import gemm_rate
from gemm import sync as _sync
from vaetransfer import costmodel
from vaetransfer.activations import compute_activations
from vaetransfer.models import ConvVAE
from vaetransfer.similarity import pairwise
from vaetransfer.similarity.reference import naive_cka, naive_procrustes

WIDTHS = (10, 256, 1024, 4096, 8192, 32768)


class PeakRSS:
    """Peak resident set size above the starting one, sampled from /proc/self/statm."""

    def __enter__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def gib(self) -> float:
        return (self.peak - self.start) / 2**30


def snapshots(n: int) -> list[np.ndarray]:
    """32 representations: the 16 layers of two randomly initialised conv VAEs on n images."""
    rng = np.random.default_rng(0)
    images = ((rng.random((n, 64, 64, 1)) > 0.85) * 255).astype(np.uint8)
    reps = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        reps.extend(compute_activations(ConvVAE(1), images, seed=seed).values())
    return [r.reshape(n, -1) for r in reps]


def timed(fn, device: str):
    with PeakRSS() as mem:
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        seconds = time.perf_counter() - t
    return out, seconds, mem.gib


ROWS: list[tuple] = []


def row(section, what, n, seconds, floor=None, naive=None, peak=None, note=""):
    ROWS.append((section, what, n, seconds, floor, naive, peak, note))
    ratio = f"{seconds / floor:5.2f}x floor" if floor else ""
    speed = f"{naive / seconds:8.0f}x naive" if naive else ""
    print(f"{section:3s} {what:34s} n={n:<5d} {seconds:9.2f}s {ratio:>13s} {speed:>15s} "
          f"{'' if peak is None else f'{peak:6.2f} GiB'} {note}", flush=True)


def block_flops(reps, n: int, metric: str) -> costmodel.Flops:
    """The engine's FLOPs for pairwise(reps, reps, metric): preparation plus the unordered pairs
    (CKA's stacked dot product multiplies the full m x m block)."""
    widths = [r.shape[1] for r in reps]
    flops = costmodel.prepare_flops(widths, n, [metric], eigh=costmodel.NOMINAL_EIGH_FLOPS)
    if metric == "cka":
        return flops + costmodel.Flops(float32=2.0 * n * n * len(widths) ** 2)
    for i, j in itertools.combinations(range(len(widths)), 2):
        flops += costmodel.pair_flops([widths[i]], [widths[j]], n, [metric],
                                      eigvalsh=costmodel.NOMINAL_EIGVALSH_FLOPS)
    return flops


def naive_block(reps, fn, budget_s: float, cost):
    """Time `fn` over the 528 unordered pairs (with the diagonal); when the estimate from the
    cheapest pairs exceeds `budget_s`, time a sample and extrapolate by `cost(p, q)`."""
    pairs = list(itertools.combinations_with_replacement(range(len(reps)), 2))
    order = sorted(pairs, key=lambda ij: cost(reps[ij[0]].shape[1], reps[ij[1]].shape[1]))
    spent, costs_done, done = 0.0, 0.0, 0
    for i, j in order:
        t = time.perf_counter()
        fn(reps[i], reps[j])
        spent += time.perf_counter() - t
        costs_done += cost(reps[i].shape[1], reps[j].shape[1])
        done += 1
        if spent > budget_s:
            break
    if done == len(pairs):
        return spent, "all pairs timed"
    total = sum(cost(reps[i].shape[1], reps[j].shape[1]) for i, j in pairs)
    return spent * total / costs_done, f"extrapolated from {done} cheapest pairs ({spent:.0f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-procrustes-5000", action="store_true",
                        help="skip the n = 5000 Procrustes block (about 20 min on 2 CPU cores)")
    parser.add_argument("--naive-budget", type=float, default=60.0)
    parser.add_argument("--smoke", action="store_true", help="toy sizes: checks the script, not the engine")
    args = parser.parse_args()
    n_pair, n_block, n_large = (200, 100, 200) if args.smoke else (5000, 1000, 5000)
    widths = [w for w in WIDTHS if w <= 1024] if args.smoke else WIDTHS
    torch.set_num_threads(args.threads)
    dev = args.device
    print(f"device={dev} threads={torch.get_num_threads()} torch={torch.__version__}")

    # ---------------------------------------------------------------- (a) one pair at n = 5000
    n = n_pair
    rng = np.random.default_rng(1)
    for width in widths:
        base = rng.standard_normal((n, min(width, 64))).astype(np.float32)
        mix_x = rng.standard_normal((base.shape[1], width)).astype(np.float32)
        mix_y = rng.standard_normal((base.shape[1], width)).astype(np.float32)
        X = np.maximum(base @ mix_x + rng.standard_normal((n, width), dtype=np.float32), 0)
        Y = np.maximum(base @ mix_y + rng.standard_normal((n, width), dtype=np.float32), 0)
        for metric in ("cka", "procrustes"):
            _, s, peak = timed(lambda: pairwise([X], [Y], metric, device=dev), dev)
            flops = costmodel.prepare_flops([width, width], n, [metric]) + costmodel.pair_flops(
                [width], [width], n, [metric])
            row("a", f"{metric} one pair {width} x {width}", n, s, peak=peak,
                note=f"model {flops.seconds():.1f}s")
        del X, Y

    # ---------------------------------------------------------- (b) block at n = 1000 vs naive
    rates = {
        "float32": gemm_rate(n_block, 4096, torch.float32, dev),
        "float64": gemm_rate(n_block, n_block, torch.float64, dev),
    }
    print(f"GEMM rates at n={n_block}: float32 {rates['float32']:.0f} GFLOP/s, float64 {rates['float64']:.0f} GFLOP/s")
    n = n_block
    reps = snapshots(n)
    for metric, naive_fn in (("cka", naive_cka), ("procrustes", naive_procrustes)):
        _, s, peak = timed(lambda: pairwise(reps, reps, metric, device=dev), dev)
        flops = block_flops(reps, n, metric)
        floor = flops.seconds(rates)
        if metric == "cka":
            cost = lambda p, q: n * n * (p + q)  # two Grams per pair  # noqa: E731
        else:
            cost = lambda p, q: p * q * (n + min(p, q))  # X^T Y product + its SVD  # noqa: E731
        naive_s, how = naive_block(reps, naive_fn, args.naive_budget, cost)
        row("b", f"{metric} block 2x16 (engine)", n, s, floor=floor, naive=naive_s, peak=peak,
            note=f"floor {floor:.2f}s ({flops.float32 / 1e9:.0f} GF f32 + {flops.float64 / 1e9:.0f} GF f64); "
                 f"naive {naive_s:.0f}s, {how}")
    del reps

    # ------------------------------------------------------------ (c) block at n = 5000, engine
    rates5 = {
        "float32": gemm_rate(n_large, 4096, torch.float32, dev, repeats=3),
        "float64": gemm_rate(n_large, n_large, torch.float64, dev, repeats=2),
    }
    print(f"GEMM rates at n={n_large}: float32 {rates5['float32']:.0f} GFLOP/s, float64 {rates5['float64']:.0f} GFLOP/s")
    n = n_large
    reps = snapshots(n)
    for metric in ("cka", "procrustes"):
        if metric == "procrustes" and args.skip_procrustes_5000:
            continue
        flops = block_flops(reps, n, metric)
        _, s, peak = timed(lambda: pairwise(reps, reps, metric, device=dev), dev)
        floor = flops.seconds(rates5)
        row("c", f"{metric} block 2x16 (engine)", n, s, floor=floor, peak=peak,
            note=f"floor {floor:.1f}s")


if __name__ == "__main__":
    main()
