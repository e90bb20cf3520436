"""Score one shard of snapshot pairs (every layer pair, every metric) into a long-format Parquet."""

from vaetransfer.io import write_parquet
from vaetransfer.runtime import log_to
from vaetransfer.scoring import score_pairs


def main(pairs: list[list[str]], metrics: list[str], family: str, out: str) -> None:
    table = score_pairs([tuple(p) for p in pairs], metrics, family)
    print(f"{len(pairs)} snapshot pairs, {len(table)} scores")
    write_parquet(out, table)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.params.pairs, snakemake.params.metrics, snakemake.wildcards.family, snakemake.output[0])
