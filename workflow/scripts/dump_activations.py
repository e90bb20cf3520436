"""Dump the named representations of one checkpoint on one dataset's evaluation sample."""

from pathlib import Path

import numpy as np

from vaetransfer.activations import compute_activations, save_activations
from vaetransfer.data.store import load_images, load_meta
from vaetransfer.runtime import log_to, resolve_device
from vaetransfer.train import load_checkpoint
from vaetransfer.trainconfig import objective_registry


def _source_dataset(cfg: dict) -> str:
    if not cfg.get("init_checkpoint"):
        return cfg["dataset"]
    return load_checkpoint(cfg["init_checkpoint"])[1]["config"]["dataset"]


def main(checkpoint: str, images: str, indices: str, eval_dataset: str, seed: int, device: str,
         arrays: str) -> None:
    device = resolve_device(device)
    model, ckpt = load_checkpoint(checkpoint, device=device)
    data_dir = Path(images).parent
    meta = load_meta(data_dir)
    if meta["channels"] != ckpt["model_args"]["channels"]:
        raise ValueError(
            f"{checkpoint} expects {ckpt['model_args']['channels']}-channel images but "
            f"{eval_dataset} has {meta['channels']} channels"
        )
    idx = np.load(indices)
    acts = compute_activations(model, load_images(data_dir)[idx], seed=seed, device=device)
    cfg = {"architecture": "conv", **ckpt["config"]}  # checkpoints from before architectures existed
    identity = {
        "dataset": cfg["dataset"],
        "architecture": cfg["architecture"],
        "objective": cfg["objective"],
        "hparam_name": objective_registry(cfg["architecture"])[cfg["objective"]].hparam,
        "hparam": float(cfg["hparam"]),
        "seed": int(cfg["seed"]),
        "step": int(ckpt["step"]),
        # Transfer runs (vaetransfer.transfer): whose weights they started from, what was retrained.
        "source_dataset": _source_dataset(cfg),
        "retrained": ",".join(cfg.get("retrain_layers") or []),
    }
    save_activations(arrays, acts, {"model": identity, "eval_dataset": eval_dataset,
                                    "activation_seed": seed, "example_indices": idx.tolist()})


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.params.checkpoint, snakemake.input.images, snakemake.input.indices,
             snakemake.wildcards.eval_dataset, snakemake.params.seed, snakemake.params.device, snakemake.output.arrays)
