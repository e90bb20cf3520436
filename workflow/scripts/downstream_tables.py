"""Table 1 (mean test accuracy over labels) and Appendix A (per label), as Parquet and Markdown."""

from vaetransfer.downstream import collect
from vaetransfer.runtime import log_to


def main(paths: list[str], per_label: str, table1: str, per_label_md: str, table1_md: str) -> None:
    collect(paths, per_label, table1, per_label_md, table1_md)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        out = snakemake.output
        main(list(snakemake.input), out.per_label, out.table1, out.per_label_md, out.table1_md)
