"""Train one model (dataset, architecture, objective, hyper-parameter, seed): checkpoints + loss log."""

from pathlib import Path

from vaetransfer.classify import discrete_factors, factor_labels
from vaetransfer.data.store import load_factors, load_images, load_meta, split_indices
from vaetransfer.models import is_vae
from vaetransfer.runtime import log_to, resolve_device
from vaetransfer.train import train
from vaetransfer.trainconfig import run_config


def main(images: str, dataset: str, architecture: str, objective: str, hparam: str, seed: int,
         run: dict, checkpoints: str, losses: str, threads: int | None = None) -> None:
    """``run``: the resolved settings of this run (common.smk's get_train_params);
    ``checkpoints``: the directory receiving ``step<step>.pt`` files."""
    data_dir = Path(images).parent
    meta = load_meta(data_dir)
    labels, factors = None, {}
    if not is_vae(architecture):
        factors = discrete_factors(meta)
        labels = factor_labels(load_factors(data_dir), meta)
    config = run_config(dataset, architecture, objective, float(hparam), int(seed), run,
                        meta["channels"], resolve_device(run["device"]), factors)
    train_idx, _ = split_indices(meta["n"], config.seed, config.validation_fraction)
    Path(checkpoints).mkdir(parents=True, exist_ok=True)
    paths = {step: Path(checkpoints) / f"step{step}.pt" for step in config.checkpoint_steps}
    # Not a declared output: it must survive Snakemake's cleanup of a failed attempt.
    resume_dir = Path(losses).parent / "resume"
    train(config, load_images(data_dir), train_idx, paths, losses, threads=threads,
          resume_dir=resume_dir, save_every=run["resume_every"], labels=labels)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.input.images, **snakemake.wildcards, run=snakemake.params.run,
             checkpoints=snakemake.output.checkpoints, losses=snakemake.output.losses, threads=snakemake.threads)
