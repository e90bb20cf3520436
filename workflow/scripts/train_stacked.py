"""Train every seed of one VAE configuration (dataset, architecture, objective, hyper-parameter) in
one process (vaetransfer.stacked): the same checkpoints and loss logs as one train_vae job per seed."""

from pathlib import Path

from vaetransfer.data.store import load_images, load_meta, split_indices
from vaetransfer.runtime import log_to, resolve_device
from vaetransfer.stacked import train_stacked
from vaetransfer.trainconfig import run_config


def main(images: str, dataset: str, architecture: str, objective: str, hparam: str, seeds: list[int],
         run: dict, checkpoints: list[str], losses: list[str], threads: int | None = None) -> None:
    """``checkpoints``: one directory per seed; ``losses``: one loss log per seed (seed order)."""
    data_dir = Path(images).parent
    meta = load_meta(data_dir)
    device = resolve_device(run["device"])
    configs, indices, paths, resume_dirs = [], [], [], []
    for seed, directory, loss in zip(seeds, checkpoints, losses, strict=True):
        config = run_config(dataset, architecture, objective, float(hparam), int(seed), run,
                            meta["channels"], device)
        configs.append(config)
        indices.append(split_indices(meta["n"], config.seed, config.validation_fraction)[0])
        Path(directory).mkdir(parents=True, exist_ok=True)
        paths.append({step: Path(directory) / f"step{step}.pt" for step in config.checkpoint_steps})
        resume_dirs.append(Path(loss).parent / "resume")  # where train_vae keeps it too
    train_stacked(configs, load_images(data_dir), indices, paths, list(losses), threads=threads,
                  resume_dirs=resume_dirs, save_every=run["resume_every"])


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.input.images, **snakemake.wildcards, seeds=snakemake.params.seeds, run=snakemake.params.run,
             checkpoints=list(snakemake.output.checkpoints), losses=list(snakemake.output.losses),
             threads=snakemake.threads)
