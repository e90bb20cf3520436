"""Progressive decoder unfreezing of one source -> target pair and seed: held-out reconstruction
losses (one row per model) and the Fig. 6 / Appendix B grids."""

from pathlib import Path

from vaetransfer.io import write_parquet
from vaetransfer.plotting import save_figure
from vaetransfer.runtime import log_to, resolve_device
from vaetransfer.transfer import unfreezing_grids, unfreezing_study


def main(images: str, models: dict, seed: int, n_examples: int, validation_fraction: float, device: str,
         table: str, figures: str, source: str, target: str) -> None:
    device = resolve_device(device)
    data_dir = Path(images).parent
    losses = unfreezing_study(data_dir, models, seed, n_examples, validation_fraction, device)
    # The table names its pair and seed itself: readers never parse its path.
    write_parquet(table, losses.assign(source=source, target=target, seed=seed))
    Path(figures).mkdir(parents=True, exist_ok=True)
    for name, fig in unfreezing_grids(data_dir, models, seed, validation_fraction, device).items():
        save_figure(fig, Path(figures) / f"{name}.png", Path(figures) / f"{name}.pdf")


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        p = snakemake.params
        main(snakemake.input.images, dict(p.models), p.seed, p.n_examples, p.validation_fraction, p.device,
             snakemake.output.table, snakemake.output.figures, snakemake.wildcards.source,
             snakemake.wildcards.target)
