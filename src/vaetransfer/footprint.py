"""Disk, memory and CPU footprint of a config's similarity stage (``vaetransfer footprint``).

Peak disk of activation dumps. Dumps are temp() by default: Snakemake removes one once every shard
that reads it has finished. Dumps get priorities in shard order and shards a higher one (see
workflow/rules/common.smk), so whenever a shard can run it runs before further dumps, and dumps
are written shard by shard. With at most J jobs at once, the dumps alive at any moment belong to
the shards in flight: at most J running shards plus the shards whose dumps are being written,
(J + 1) shards in all (bound B below) - as long as training has finished. While training jobs
still run, a shard can wait for a slow model and more dumps can accumulate (at most those of the
snapshots whose shards await one of the J running trainings); `keep_activations: true` keeps all
of them (total A below).
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from vaetransfer import costmodel, plan, sharding


def footprint(config: Mapping[str, Any], jobs: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per (evaluation dataset, architecture) sizes and the whole plan's totals (GB, hours) for `jobs` parallel jobs."""
    n = config["similarity"]["n_examples"]
    metrics = config["similarity"]["metrics"]
    shards = [s for family in plan.families(config) for s in sharding.shards(config, family)]
    snapshots = {s for block in shards for s in plan.unique_snapshots(block)}
    rows = []
    kinds = sorted({(s.eval_dataset, s.run.architecture) for s in snapshots})
    for dataset, architecture in kinds:
        widths = costmodel.layer_widths(plan.dataset_channels(config, dataset), architecture).values()
        count = sum((s.eval_dataset, s.run.architecture) == (dataset, architecture) for s in snapshots)
        rows.append({
            "eval_dataset": dataset,
            "architecture": architecture,
            "dumps": count,
            "dump_GB": costmodel.activation_bytes(widths, n) / 1e9,
            "all_dumps_GB": count * costmodel.activation_bytes(widths, n) / 1e9,
            "prepared_GB": costmodel.prepared_bytes(widths, n, metrics) / 1e9,
        })
    table = pd.DataFrame(rows)
    sizes = {s: costmodel.activation_bytes(sharding.snapshot_widths(config, s), n) for s in snapshots}
    per_shard = sorted((sum(sizes[s] for s in plan.unique_snapshots(b)) for b in shards), reverse=True)
    resources = [sharding.shard_resources(config, b) for b in shards]
    totals = {
        "shards": len(shards),
        "A_all_dumps_GB": sum(sizes.values()) / 1e9,
        "B_peak_dumps_GB": min(sum(per_shard[: jobs + 1]), sum(sizes.values())) / 1e9,
        "shard_max_mem_GB": max((r["mem_mb"] for r in resources), default=0) / 1024,
        "shard_max_scratch_GB": max((r["disk_mb"] for r in resources), default=0) / 1024,
        "scoring_job_hours": sum(sharding.estimate_seconds(config, b) for b in shards) / 3600,
    }
    return table, totals


def report(config: Mapping[str, Any], jobs: int) -> str:
    """The footprint as printable text."""
    table, totals = footprint(config, jobs)
    n = config["similarity"]["n_examples"]
    lines = [
        f"Activation dumps (float32, n = {n}, metrics {', '.join(config['similarity']['metrics'])}):",
        table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"),
        "",
        f"score_shard jobs:                          {totals['shards']}",
        f"A  every dump kept (keep_activations):     {totals['A_all_dumps_GB']:,.1f} GB",
        f"B  peak of temp() dumps with {jobs} jobs:   {totals['B_peak_dumps_GB']:,.1f} GB"
        "  (after training; see vaetransfer.footprint)",
        f"largest shard: memory {totals['shard_max_mem_GB']:.1f} GiB, "
        f"scratch {totals['shard_max_scratch_GB']:.1f} GiB",
        f"scoring, estimated at the reference rates: {totals['scoring_job_hours']:,.0f} job-hours "
        "(2-core jobs)",
    ]
    return "\n".join(lines)
