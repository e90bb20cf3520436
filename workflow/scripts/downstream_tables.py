"""Table 1 (mean test accuracy over labels) and Appendix A (per label), as Parquet, Markdown and
HTML (the report shows the HTML)."""

import pandas as pd

from vaetransfer.downstream import collect
from vaetransfer.io import atomic_path
from vaetransfer.runtime import log_to


def main(paths: list[str], per_label: str, table1: str, per_label_md: str, table1_md: str,
         per_label_html: str | None = None, table1_html: str | None = None) -> None:
    collect(paths, per_label, table1, per_label_md, table1_md)
    for parquet, html in ((table1, table1_html), (per_label, per_label_html)):
        if html:
            with atomic_path(html) as tmp:
                tmp.write_text(pd.read_parquet(parquet).to_html(index=False, float_format="{:.3f}".format))


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        out = snakemake.output
        main(list(snakemake.input), out.per_label, out.table1, out.per_label_md, out.table1_md,
             out.per_label_html, out.table1_html)
