"""A named figure file (fig6a, fig7, ...) as a copy of the drawing a transfer rule made."""

import shutil

from vaetransfer.io import atomic_path
from vaetransfer.runtime import log_to


def main(sources: list[str], outputs: list[str]) -> None:
    for source, out in zip(sources, outputs, strict=True):
        with atomic_path(out) as tmp:
            shutil.copyfile(source, tmp)
        print(f"{source} -> {out}")


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main([snakemake.params.png, snakemake.params.pdf], [snakemake.output.png, snakemake.output.pdf])
