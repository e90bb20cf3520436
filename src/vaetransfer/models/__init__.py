"""The model zoo: one registry of architectures, keyed like configs, wildcards and file names.

- ``conv``: the convolutional VAE (paper Table 7 as coded, :mod:`.conv`);
- ``fc``: the fully-connected VAE (Table 8 as coded, :mod:`.fc`);
- ``classifier``: the Appendix H classifier (:mod:`.classifier`), trained with the summed
  cross-entropy instead of a VAE objective.

Every architecture records ``LAYERS`` (vaetransfer.layers) through ``activations(x, generator)``.
"""

from vaetransfer.models.classifier import ConvClassifier, accuracies, summed_cross_entropy
from vaetransfer.models.common import VAE, NamedLayers, VAEOutput, images_to_tensor, sample_latent
from vaetransfer.models.conv import WEIGHTED_LAYERS, ConvVAE
from vaetransfer.models.fc import FCVAE

ARCHITECTURES: dict[str, type[NamedLayers]] = {
    "conv": ConvVAE,
    "fc": FCVAE,
    "classifier": ConvClassifier,
}
#: Architectures trained with a VAE objective (vaetransfer.objectives.OBJECTIVES).
VAE_ARCHITECTURES = ("conv", "fc")


def is_vae(architecture: str) -> bool:
    return architecture in VAE_ARCHITECTURES


def build_model(architecture: str, **model_args) -> NamedLayers:
    """Instantiate ``ARCHITECTURES[architecture](**model_args)``; KeyError names the valid keys."""
    if architecture not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](**model_args)


__all__ = [
    "ARCHITECTURES", "VAE_ARCHITECTURES", "ConvClassifier", "ConvVAE", "FCVAE", "NamedLayers",
    "VAEOutput", "WEIGHTED_LAYERS", "accuracies", "build_model", "images_to_tensor", "is_vae",
    "sample_latent", "summed_cross_entropy",
]
