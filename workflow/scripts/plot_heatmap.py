"""Draw one named heatmap figure (vaetransfer.figures.FIGURES) from the aggregated block tables its
panels read (vaetransfer.panels.Panel.table), as PNG and PDF."""

import pandas as pd

from vaetransfer.figures import FIGURES
from vaetransfer.plotting import save_figure
from vaetransfer.runtime import log_to


def main(tables: list[str], figure: str, spec: dict, png: str, pdf: str) -> None:
    # Two panels may read the same block: read each table once, so no row is counted twice.
    table = pd.concat([pd.read_parquet(t) for t in dict.fromkeys(map(str, tables))], ignore_index=True)
    save_figure(FIGURES[figure](table, spec), png, pdf)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(list(snakemake.input), snakemake.params.figure, dict(snakemake.params.spec),
             snakemake.output.png, snakemake.output.pdf)
