"""Draw the convergence curves (Appendix J, vaetransfer.figures.LOSS_FIGURES['appJ']) from the
aggregated loss tables, as PNG and PDF."""

import pandas as pd

from vaetransfer.figures import LOSS_FIGURES
from vaetransfer.plotting import save_figure
from vaetransfer.runtime import log_to


def main(tables: list[str], spec: dict, png: str, pdf: str) -> None:
    table = pd.concat([pd.read_parquet(t) for t in dict.fromkeys(map(str, tables))], ignore_index=True)
    save_figure(LOSS_FIGURES["appJ"](table, spec), png, pdf)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(list(snakemake.input), dict(snakemake.params.spec), snakemake.output.png, snakemake.output.pdf)
