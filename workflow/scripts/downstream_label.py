"""Classify one label of the target from encoded features (gradient boosting); one Parquet row."""

from pathlib import Path

from vaetransfer.downstream import run_label
from vaetransfer.runtime import log_to


def main(features: str, meta: str, label: str, role: str, n_estimators: int, out: str) -> None:
    run_label(features, Path(meta).parent, label, role, out, n_estimators=n_estimators)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.input.features, snakemake.input.meta, snakemake.wildcards.label, snakemake.params.role,
             snakemake.params.n_estimators, snakemake.output[0])
