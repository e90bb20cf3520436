"""Reduce the per-step loss logs of many runs to one long table of windowed convergence curves
(vaetransfer.losscurves.aggregate; Appendix J). Identity comes from the run dicts, not the paths."""

from vaetransfer.io import write_parquet
from vaetransfer.losscurves import aggregate
from vaetransfer.runtime import log_to


def main(runs: list[dict], out: str, points: int = 500) -> None:
    table = aggregate(runs, points=points)
    print(f"{len(runs)} runs -> {len(table)} rows")
    write_parquet(out, table)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main([dict(r) for r in snakemake.params.runs], snakemake.output[0])
