"""Train one transfer run: the source VAE with `retrain_layers` re-initialised and trained on the
target, everything else frozen (vaetransfer.transfer, spec reference.md §6.1)."""

import dataclasses
from pathlib import Path

from vaetransfer.data.store import load_images, load_meta, split_indices
from vaetransfer.runtime import log_to, resolve_device
from vaetransfer.train import train
from vaetransfer.trainconfig import run_config


def main(images: str, target: str, seed: int, run: dict, checkpoints: str, losses: str,
         threads: int | None = None) -> None:
    data_dir = Path(images).parent
    meta = load_meta(data_dir)
    config = run_config(target, "conv", "beta_vae", 1.0, int(seed), run, meta["channels"],
                        resolve_device(run["device"]))
    config = dataclasses.replace(config, init_checkpoint=run["init_checkpoint"],
                                 retrain_layers=list(run["retrain_layers"]))
    train_idx, _ = split_indices(meta["n"], config.seed, config.validation_fraction)
    Path(checkpoints).mkdir(parents=True, exist_ok=True)
    paths = {step: Path(checkpoints) / f"step{step}.pt" for step in config.checkpoint_steps}
    train(config, load_images(data_dir), train_idx, paths, losses, threads=threads,
          resume_dir=Path(losses).parent / "resume", save_every=run["resume_every"])


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.input.images, snakemake.wildcards.target, snakemake.wildcards.seed, snakemake.params.run,
             snakemake.output.checkpoints, snakemake.output.losses, snakemake.threads)
