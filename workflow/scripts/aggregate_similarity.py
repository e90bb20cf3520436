"""Concatenate the shard tables into results/tables/similarity.parquet."""

import pandas as pd

from vaetransfer.io import write_parquet
from vaetransfer.runtime import log_to
from vaetransfer.scoring import aggregate


def main(shards: list[str], out: str) -> None:
    table = aggregate(pd.read_parquet(p) for p in shards)
    print(f"{len(shards)} shards, {len(table)} scores")
    write_parquet(out, table)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(list(snakemake.input), snakemake.output[0])
