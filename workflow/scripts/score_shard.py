"""Score one shard of snapshot pairs (every layer pair, every metric) into a long-format Parquet."""

import os

from vaetransfer.io import write_parquet
from vaetransfer.runtime import log_to, resolve_device
from vaetransfer.scoring import score_pairs


def main(pairs: list[list[str]], similarity: dict, family: str, out: str, threads: int = 1) -> None:
    import torch

    torch.set_num_threads(threads)
    device = resolve_device(similarity.get("device", "cpu"))
    table = score_pairs(
        [tuple(p) for p in pairs],
        similarity["metrics"],
        family,
        device=device,
        debiased=similarity.get("debiased", False),
        constant=similarity.get("constant_score", "defined"),
        memory_mb=similarity.get("memory_mb", 2000),
        scratch=os.environ.get("TMPDIR"),
    )
    print(f"{len(pairs)} snapshot pairs, {len(table)} scores on {device}")
    write_parquet(out, table)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.params.pairs, snakemake.params.similarity, snakemake.wildcards.family, snakemake.output[0], snakemake.threads)
