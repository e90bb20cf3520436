"""The paper's claims checked on this run (vaetransfer.findings): one Parquet row per (claim, panel or
pair), plus the same table as Markdown and as a small HTML page for Snakemake's report."""

import pandas as pd

from vaetransfer.findings import Thresholds, evaluate, to_html, to_markdown
from vaetransfer.io import atomic_path, write_parquet
from vaetransfer.runtime import log_to

def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    return pd.concat(frames, ignore_index=True) if frames else None


def main(similarity: list[str], unfreezing: list[str], table1: str | None, config: dict, parquet: str,
         markdown: str, html: str) -> pd.DataFrame:
    frame = evaluate(
        config,
        _concat([pd.read_parquet(p) for p in similarity]),
        _concat([pd.read_parquet(p) for p in unfreezing]),
        pd.read_parquet(table1) if table1 else None,
        Thresholds(**config.get("findings", {}).get("thresholds", {})),
    )
    write_parquet(parquet, frame)
    for path, text in ((markdown, to_markdown(frame)), (html, to_html(frame))):
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    print(f"{int(frame['supported'].sum())} supported, {int((~frame['supported']).sum())} not supported, "
          f"{int(frame['supported'].isna().sum())} not evaluated")
    return frame


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(list(snakemake.input.similarity), list(snakemake.input.unfreezing),
             snakemake.input.table1[0] if snakemake.input.table1 else None, snakemake.config,
             snakemake.output.parquet, snakemake.output.markdown, snakemake.output.html)
