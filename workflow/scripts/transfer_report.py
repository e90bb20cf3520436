"""One-page transferability report of a source -> target pair (vaetransfer.report): CKA quadrants,
reconstructions, unfreezing losses, and which components to retrain."""

import json

import pandas as pd

from vaetransfer.io import write_json
from vaetransfer.report import build_report
from vaetransfer.runtime import log_to


def main(table: str, grid: str, unfreezing: str, source: str, target: str, html: str, summary: str,
         downstream: str | None = None) -> None:
    losses = pd.read_parquet(unfreezing)
    # The rule reads the innermost-first series (Fig. 6); the target model is the reference.
    losses = {model: loss for model, loss in zip(losses["model"], losses["heldout_loss"])
              if model != "target" and not model.startswith("outer")}
    report = build_report(pd.read_parquet(table), source, target, html, metric="cka", grid_png=grid,
                          unfreezing=losses, downstream=pd.read_parquet(downstream) if downstream else None)
    write_json(summary, json.loads(json.dumps({
        "source": source, "target": target, "summary": report.summary,
        "retrain": report.recommendation.retrain, "reasons": report.recommendation.reasons,
    }, default=float)))


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.input.table, snakemake.input.grid, snakemake.input.unfreezing, snakemake.wildcards.source,
             snakemake.wildcards.target, snakemake.output.html, snakemake.output.summary,
             snakemake.input.downstream[0] if snakemake.input.downstream else None)
