"""Cutting each comparison family into cost-balanced scoring shards, and sizing their jobs.

The comparisons come from :mod:`vaetransfer.plan`; costs from :mod:`vaetransfer.costmodel` (layer
widths of each snapshot's architecture on its evaluation dataset, ``n_examples``, the metrics).
Deterministic and pure: the Snakefile's ``score_shard`` jobs and ``vaetransfer footprint`` see the
same shards.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Mapping

from vaetransfer import costmodel
from vaetransfer.plan import (
    ConfigError, Snapshot, blocks, dataset_channels, families, unique_snapshots,
)

Pairs = list[tuple[Snapshot, Snapshot]]


def shards(config: Mapping[str, Any], family: str, block: str | None = None) -> list[Pairs]:
    """The shards of one block of `family` (:func:`vaetransfer.plan.blocks`), or, without `block`,
    of every block in turn. A shard never spans two blocks, so each block's table (what a figure
    reads) needs only its own shards."""
    found = blocks(config, family)
    if block is not None:
        if block not in found:
            raise ConfigError(f"family {family!r} has no block {block!r}")
        return pack(config, family, found[block])
    return [s for pairs in found.values() for s in pack(config, family, pairs)]


def pack(config: Mapping[str, Any], family: str, pairs: Pairs) -> list[Pairs]:
    """Comparisons `pairs` (of `family`) in cost-balanced shards (greedy LPT bin packing).

    1. Comparisons are grouped so that pairs sharing snapshots stay together (learning dynamics:
       one run; cross-domain: one source snapshot against its target partners), and a group is cut,
       in order, into items of at most `similarity.pairs_per_shard` pairs and (when it has more
       than one pair) at most `similarity.shard_minutes` of estimated cost.
    2. Each item's cost is estimated by :mod:`vaetransfer.costmodel` from the layer widths and
       `n_examples`: preparing its distinct snapshots plus scoring its pairs.
    3. k = max(ceil(total cost / shard_minutes), ceil(pairs / pairs_per_shard)) shards (at most one
       per item); items are placed largest first into the currently cheapest shard that has room
       for their pairs (Graham's LPT: without the pair cap, the costliest shard is within 4/3 of
       the best possible), kept in plan order inside a shard.
    Deterministic: the same config always gives the same shards.
    """
    sim = config["similarity"]
    cap, budget = sim["pairs_per_shard"], 60.0 * sim["shard_minutes"]
    items: list[list[tuple[Snapshot, Snapshot]]] = []
    for group in _groups(family, pairs):
        item: list[tuple[Snapshot, Snapshot]] = []
        for pair in group:
            if item and (len(item) >= cap or estimate_seconds(config, [*item, pair]) > budget):
                items.append(item)
                item = []
            item.append(pair)
        if item:
            items.append(item)
    if not items:
        return []
    costs = [estimate_seconds(config, item) for item in items]
    n_pairs = sum(len(item) for item in items)
    k = min(len(items), max(1, math.ceil(sum(costs) / budget), math.ceil(n_pairs / cap)))
    loads, sizes = [0.0] * k, [0] * k
    members: list[list[int]] = [[] for _ in range(k)]
    for i in sorted(range(len(items)), key=lambda i: (-costs[i], i)):
        room = [b for b in range(len(loads)) if sizes[b] + len(items[i]) <= cap]
        if not room:  # every shard is full: open another (the pair cap is a hard limit)
            loads.append(0.0), sizes.append(0), members.append([])
            room = [len(loads) - 1]
        b = min(room, key=lambda b: (loads[b], b))
        members[b].append(i)
        loads[b] += costs[i]
        sizes[b] += len(items[i])
    bins = sorted((sorted(m) for m in members if m), key=lambda m: m[0])
    return [[pair for i in m for pair in items[i]] for m in bins]


def _groups(family: str, pairs: Pairs) -> list[Pairs]:
    """Consecutive comparisons that share a first snapshot's run (learning dynamics) or the first
    snapshot itself (other families): the units that the sharding keeps together when it can."""
    key = (lambda pair: pair[0].run) if family == "learning_dynamics" else (lambda pair: pair[0])
    return [list(g) for _, g in itertools.groupby(pairs, key=key)]


def snapshot_widths(config: Mapping[str, Any], snapshot: Snapshot) -> tuple[int, ...]:
    """Flattened widths of a snapshot's representations (its input is the evaluation dataset)."""
    channels = dataset_channels(config, snapshot.eval_dataset)
    return tuple(costmodel.layer_widths(channels, snapshot.run.architecture).values())


def estimate_seconds(config: Mapping[str, Any], pairs: list[tuple[Snapshot, Snapshot]]) -> float:
    """Estimated single-job seconds to score `pairs` (cost model at the reference GEMM rates)."""
    n, metrics = config["similarity"]["n_examples"], tuple(config["similarity"]["metrics"])
    flops = costmodel.Flops()
    for snap in unique_snapshots(pairs):
        flops += _prepare_flops(snapshot_widths(config, snap), n, metrics)
    for a, b in pairs:
        flops += _pair_flops(snapshot_widths(config, a), snapshot_widths(config, b), n, metrics)
    return flops.seconds()


@functools.lru_cache(maxsize=None)
def _prepare_flops(widths, n, metrics):
    return costmodel.prepare_flops(widths, n, metrics)


@functools.lru_cache(maxsize=None)
def _pair_flops(widths_x, widths_y, n, metrics):
    return costmodel.pair_flops(widths_x, widths_y, n, metrics)


def shard_resources(config: Mapping[str, Any], pairs: list[tuple[Snapshot, Snapshot]]) -> dict[str, int]:
    """Memory (MB), time (min) and scratch disk (MB) of one shard job at its first attempt.

    Memory = process overhead + the transient working set of its widest representation + the
    prepared data kept in memory (at most `similarity.memory_mb`; the rest is spilled to disk).
    Time = 3x the cost model's estimate + 10 min. Disk = everything prepared (worst-case spill).
    """
    sim = config["similarity"]
    n, metrics = sim["n_examples"], sim["metrics"]
    widths = [snapshot_widths(config, s) for s in unique_snapshots(pairs)]
    transient = max(costmodel.transient_bytes(w, n) for w in widths)
    kept = sum(costmodel.prepared_bytes(w, n, metrics) for w in widths)
    memory = costmodel.PROCESS_BYTES + transient + min(kept, sim["memory_mb"] * 2**20)
    return {
        "mem_mb": memory // 2**20 + 500,
        "runtime": int(10 + 3 * estimate_seconds(config, pairs) / 60),
        "disk_mb": kept // 2**20 + 1000,
    }


def shard_count(config: Mapping[str, Any], family: str, block: str | None = None) -> int:
    return len(shards(config, family, block))


def shard(config: Mapping[str, Any], family: str, index: int, block: str | None = None) -> Pairs:
    """Comparisons of shard `index` (0-based) of a block of `family` (of the whole family, blocks
    in turn, without `block`)."""
    found = shards(config, family, block)
    if not 0 <= index < len(found):
        where = f"block {block!r} of family {family!r}" if block else f"family {family!r}"
        raise ConfigError(f"shard {index} of {where} does not exist")
    return found[index]


def shard_path(family: str, block: str, index: int) -> str:
    return f"results/similarity/{family}/{block}/shard{index}.parquet"


def table_path(family: str, block: str) -> str:
    """The aggregated table of one block: what a figure panel reads."""
    return f"results/tables/similarity/{family}/{block}.parquet"


def shard_paths(config: Mapping[str, Any], family: str | None = None, block: str | None = None) -> list[str]:
    """Shard outputs of one block, of one family, or of the whole plan."""
    return [
        shard_path(fam, blk, i)
        for fam in ([family] if family else families(config))
        for blk in ([block] if block else blocks(config, fam))
        for i in range(shard_count(config, fam, blk))
    ]


def table_paths(config: Mapping[str, Any]) -> list[str]:
    """Every block's aggregated table."""
    return [table_path(fam, blk) for fam in families(config) for blk in blocks(config, fam)]
