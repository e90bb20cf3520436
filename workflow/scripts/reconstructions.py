"""Figs. 7 and 8: target examples beside their reconstruction by the source-trained VAE (4 x 8 pairs)."""

from pathlib import Path

from vaetransfer.plotting import save_figure
from vaetransfer.reconstruction import PAIRS_EXAMPLES, pairs_grid, reconstruct, target_examples
from vaetransfer.runtime import log_to
from vaetransfer.train import load_checkpoint


def main(images: str, checkpoint: str, validation_fraction: float, png: str, pdf: str) -> None:
    model, _ = load_checkpoint(checkpoint)
    _, examples = target_examples(Path(images).parent, PAIRS_EXAMPLES, seed=0, fraction=validation_fraction)
    save_figure(pairs_grid(examples, reconstruct(model, examples, seed=0)), png, pdf)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.input.images, snakemake.params.checkpoint, snakemake.params.validation_fraction,
             snakemake.output.png, snakemake.output.pdf)
