"""Fetch one original file of a real dataset into resources/downloads/<dataset>/<filename>."""

from pathlib import Path

from vaetransfer.data import download, real
from vaetransfer.runtime import log_to


def main(dataset: str, filename: str, overrides: dict | None, out: str) -> None:
    resources = download.apply_overrides(dataset, real.resources(dataset), overrides)
    matches = [r for r in resources if r.filename == filename]
    if not matches:
        raise ValueError(f"{filename!r} is not a file of dataset {dataset!r}; its files: {[r.filename for r in resources]}")
    path = download.fetch(matches[0], Path(out).parents[1])
    print(f"{path}: verified")


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        # Mirrors come from the config, not from params: a new mirror URL re-downloads nothing.
        spec = snakemake.config["datasets"][snakemake.wildcards.dataset]
        main(snakemake.wildcards.dataset, snakemake.wildcards.filename, spec.get("files"), snakemake.output[0])
