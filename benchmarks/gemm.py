"""GEMM rate measured in the calling process: the hardware ceiling the benchmarks' floors divide by."""

from __future__ import annotations

import time

import torch


def sync(device: str) -> None:
    """Wait for queued device work (CUDA kernels run asynchronously)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def gemm_rate(n: int, k: int, dtype: torch.dtype, device: str, repeats: int = 5) -> float:
    """Best-of-`repeats` GFLOP/s of (n x k) @ (k x n) (best, not mean: shared machines only ever
    slow a run down, so the best is the closest to what the hardware does)."""
    a = torch.rand(n, k, dtype=dtype, device=device)
    b = torch.rand(k, n, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n * n * k / best / 1e9
