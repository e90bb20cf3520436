"""Train one VAE (dataset, objective, hyper-parameter, seed) and write its checkpoints and loss log."""

from pathlib import Path

from vaetransfer.data.store import load_images, load_meta, split_indices
from vaetransfer.runtime import log_to, resolve_device
from vaetransfer.train import TrainConfig, train


def main(images: str, dataset: str, objective: str, hparam: str, seed: int, training: dict,
         checkpoints: list[str], losses: str, threads: int | None = None) -> None:
    data_dir = Path(images).parent
    meta = load_meta(data_dir)
    config = TrainConfig(
        dataset=dataset,
        objective=objective,
        hparam=float(hparam),
        seed=int(seed),
        steps=training["steps"],
        checkpoint_steps=list(training["checkpoint_steps"]),
        batch_size=training.get("batch_size", 64),
        lr=training.get("learning_rate", 1e-4),
        latent_dim=training.get("latent_dim", 10),
        channels=meta["channels"],
        validation_fraction=training.get("validation_fraction", 0.1),
        device=resolve_device(training.get("device", "auto")),
        objective_options=training.get("objective_options", {}).get(objective, {}),
    )
    train_idx, _ = split_indices(meta["n"], config.seed, config.validation_fraction)
    paths = dict(zip(config.checkpoint_steps, checkpoints, strict=True))
    # Not a declared output: it must survive Snakemake's cleanup of a failed attempt.
    resume_dir = Path(losses).parent / "resume"
    train(config, load_images(data_dir), train_idx, paths, losses, threads=threads,
          resume_dir=resume_dir, save_every=training.get("resume_every", 2000))


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.input.images, **snakemake.wildcards, training=snakemake.params.training,
             checkpoints=snakemake.output.checkpoints, losses=snakemake.output.losses, threads=snakemake.threads)
