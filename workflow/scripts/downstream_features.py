"""Encode a target dataset's downstream train/test examples with one vanilla VAE's frozen encoder."""

from pathlib import Path

from vaetransfer.downstream import SAMPLE_PRESETS, encode_target
from vaetransfer.runtime import log_to, resolve_device


def main(images: str, checkpoint: str, target: str, sample: str, device: str, out: str) -> None:
    max_train, max_test = SAMPLE_PRESETS[sample]
    encode_target(checkpoint, Path(images).parent, out, target_dataset=target, device=resolve_device(device),
                  max_train=max_train, max_test=max_test)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.input.images, snakemake.params.checkpoint, snakemake.wildcards.target,
             snakemake.params.sample, snakemake.params.device, snakemake.output[0])
