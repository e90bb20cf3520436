"""Paper Figure 1 (Section 2.3): CKA and Procrustes on toy matrices sharing 0/80/50 % of features."""

from vaetransfer.io import write_parquet
from vaetransfer.plotting import save_figure
from vaetransfer.runtime import log_to
from vaetransfer.synthetic import figure1_table, plot_figure1


def main(table_out: str, png_out: str, pdf_out: str) -> None:
    table = figure1_table()
    print(f"{table['n'].nunique()} values of n, {len(table)} scores")
    write_parquet(table_out, table)
    save_figure(plot_figure1(table), png_out, pdf_out)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.output.table, snakemake.output.png, snakemake.output.pdf)
