"""Draw one named figure (vaetransfer.figures.FIGURES) from the similarity table, as PNG and PDF."""

import pandas as pd

from vaetransfer.figures import FIGURES
from vaetransfer.plotting import save_figure
from vaetransfer.runtime import log_to


def main(table: str, figure: str, spec: dict, png: str, pdf: str) -> None:
    fig = FIGURES[figure](pd.read_parquet(table), spec)
    save_figure(fig, png, pdf)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.input[0], snakemake.params.figure, dict(snakemake.params.spec),
             snakemake.output.png, snakemake.output.pdf)
