"""Build one dataset into results/data/<name>/ (images.npy, factors.parquet, meta.json).

Procedural datasets are generated; real ones (source: download) have each original file verified
(a corrupt one is moved aside and the job fails, writing nothing) and are then preprocessed.
"""

from pathlib import Path

from vaetransfer.data.generate import build_dataset
from vaetransfer.runtime import log_to


def main(name: str, spec: dict, meta: str, files: list[str] | None = None, overrides: dict | None = None) -> None:
    originals = {Path(f).name: Path(f) for f in files or []}
    build_dataset(name, {**spec, **({"files": overrides} if overrides else {})}, Path(meta).parent,
                  files=originals or None)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        name = snakemake.wildcards.dataset
        main(name, dict(snakemake.params.spec), snakemake.output.meta, list(snakemake.input),
             snakemake.config["datasets"][name].get("files"))
