"""Build one dataset into results/data/<name>/ (images.npy, factors.parquet, meta.json)."""

from pathlib import Path

from vaetransfer.data.generate import build_dataset
from vaetransfer.runtime import log_to


def main(name: str, spec: dict, meta: str) -> None:
    build_dataset(name, spec, Path(meta).parent)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.wildcards.dataset, dict(snakemake.params.spec), snakemake.output.meta)
