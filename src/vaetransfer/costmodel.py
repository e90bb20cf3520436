"""Cost model of similarity scoring: layer widths, FLOPs, seconds, memory and disk.

Used at parse time (shard balancing, `score_shard` resources) and by ``vaetransfer footprint``.
Counts follow the engine (:mod:`vaetransfer.similarity.engine`):

- CKA preparation of an (n, p) representation: a block-triangular Gram, ``2 n^2 p (B+1)/(2B)``
  float32 FLOPs with B = ceil(n / 512) row blocks; a pair: one ``2 n^2`` float32 dot product.
- Procrustes preparation: nothing for p <= n (the factor is the centred features); for p > n the
  same Gram in float64 (shared with CKA) and an n x n float64 eigendecomposition (counted as
  ``EIGH_FLOPS * n^3``); a pair with factor
  ranks r_x <= r_y: ``2 n r_x r_y`` (product) + ``2 r_x^2 r_y (B+1)/(2B)`` (its Gram) +
  ``EIGVALSH_FLOPS * r_x^3`` float64 FLOPs.

Seconds divide by `REFERENCE_GFLOPS`, the rates measured on this project's 2-core development
machines (benchmarks/README.md); they balance shards and size job time limits, nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from vaetransfer.layers import layer_names

#: GEMM rates (GFLOP/s) of one 2-core score_shard job on the development machines.
REFERENCE_GFLOPS = {"float32": 150.0, "float64": 75.0}
#: GEMM-equivalent cost of the symmetric eigensolvers, in units of n^3, calibrated for time
#: estimates (benchmarks/README.md: a 5000 x 5000 float64 eigh with vectors took 11-16 s, eigvalsh
#: 4-7 s on the development machines: tridiagonalisation is memory-bound, far from GEMM speed).
EIGH_FLOPS = 8.0
EIGVALSH_FLOPS = 3.5
#: Their nominal LAPACK FLOP counts (tridiagonalisation 4/3 n^3, plus 2 n^3 to apply the
#: reflectors to the eigenvectors): what a "GEMM floor" counts (benchmarks/similarity.py).
NOMINAL_EIGH_FLOPS = 4 / 3 + 2
NOMINAL_EIGVALSH_FLOPS = 4 / 3
_ROW_BLOCK = 512  # as vaetransfer.similarity.engine


def layer_widths(channels: int, architecture: str = "conv") -> dict[str, int]:
    """Flattened width of each recorded representation of ``architecture`` on 64 x 64 x C.

    Checked against a forward pass of every architecture in tests/test_costmodel.py.
    """
    pixels = 64 * 64 * channels
    conv_trunk = {"1": 32 * 32 * 32, "2": 16 * 16 * 32, "3": 8 * 8 * 64, "4": 4 * 4 * 64, "5": 1024, "6": 256}
    widths = {
        "conv": {
            "input": pixels, **{f"e/{k}": v for k, v in conv_trunk.items()},
            "mean": 10, "log_var": 10, "sampled": 10,
            "d/1": 256, "d/2": 1024, "d/3": 4 * 4 * 64 * 4, "d/4": 16 * 16 * 32, "d/5": 32 * 32 * 32,
            "d/6": pixels,
        },
        "fc": {
            "input": pixels, "e/1": pixels, "e/2": 1200, "e/3": 1200, "mean": 10, "log_var": 10,
            "sampled": 10, "d/1": 1200, "d/2": 1200, "d/3": 1200, "d/4": pixels,
        },
        "classifier": {"input": pixels, **{f"c/{k}": v for k, v in conv_trunk.items()}},
    }[architecture]
    return {name: widths[name] for name in layer_names(architecture)}


def _triangle(n: int) -> float:
    blocks = math.ceil(n / _ROW_BLOCK)
    return (blocks + 1) / (2 * blocks)


def _rank(p: int, n: int) -> int:
    return min(p, n - 1)


@dataclass(frozen=True)
class Flops:
    """FLOP counts split by precision (float32 GEMMs, float64 GEMM-equivalents)."""

    float32: float = 0.0
    float64: float = 0.0

    def __add__(self, other: "Flops") -> "Flops":
        return Flops(self.float32 + other.float32, self.float64 + other.float64)

    def seconds(self, gflops: Mapping[str, float] = REFERENCE_GFLOPS) -> float:
        return self.float32 / (gflops["float32"] * 1e9) + self.float64 / (gflops["float64"] * 1e9)


def prepare_flops(widths: Iterable[int], n: int, metrics: Iterable[str], eigh: float = EIGH_FLOPS) -> Flops:
    """FLOPs to prepare representations of the given widths on n examples (`eigh`: n^3 units)."""
    metrics = set(metrics)
    total = Flops()
    for p in widths:
        gram = 2.0 * n * n * p * _triangle(n)
        if "procrustes" in metrics and p > n:  # a float64 Gram (exact null space), then eigh
            total += Flops(float64=gram + eigh * n**3)
        elif "cka" in metrics:
            total += Flops(float32=gram)
    return total


def pair_flops(
    widths_x: Iterable[int], widths_y: Iterable[int], n: int, metrics: Iterable[str],
    eigvalsh: float = EIGVALSH_FLOPS,
) -> Flops:
    """FLOPs to score every (x, y) layer pair of two prepared snapshots (`eigvalsh`: r^3 units)."""
    metrics = set(metrics)
    widths_x, widths_y = list(widths_x), list(widths_y)
    total = Flops()
    if "cka" in metrics:
        total += Flops(float32=2.0 * n * n * len(widths_x) * len(widths_y))
    if "procrustes" in metrics:
        f64 = 0.0
        for p in widths_x:
            for q in widths_y:
                small, large = sorted((_rank(p, n), _rank(q, n)))
                f64 += 2.0 * n * small * large + 2.0 * small * small * large * _triangle(small)
                f64 += eigvalsh * small**3
        total += Flops(float64=f64)
    return total


def prepared_bytes(widths: Iterable[int], n: int, metrics: Iterable[str]) -> int:
    """Bytes the engine keeps per snapshot: float32 n x n Grams, float64 n x r factors."""
    metrics = set(metrics)
    total = 0
    for p in widths:
        if "cka" in metrics:
            total += 4 * n * n
        if "procrustes" in metrics:
            total += 8 * n * _rank(p, n)
    return total


def activation_bytes(widths: Iterable[int], n: int) -> int:
    """Bytes of one activation dump (float32, every representation)."""
    return 4 * n * sum(widths)


def transient_bytes(widths: Iterable[int], n: int) -> int:
    """Peak working memory while preparing the widest layer or scoring its pairs, excluding what
    is kept: the raw float32 layer, a float32 column chunk, two n x n float64 matrices (Gram and
    its normalised copy) and the eigensolver's copy, vectors and workspace (~5 n^2 float64;
    calibrated: benchmarks/shard_memory.py measured 5.3 GiB at n = 5000)."""
    widest = max(widths)
    return 4 * n * widest + 4 * n * 4096 * 2 + 8 * n * n * 7


#: Fixed overhead of a scoring process (Python, torch, pandas), bytes.
PROCESS_BYTES = 800 * 2**20
