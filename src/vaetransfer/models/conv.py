"""The convolutional VAE exactly as the authors ran it (spec reference.md §1.1, paper Table 7 as coded).

The architecture is disentanglement_lib's ``conv_encoder`` / ``deconv_decoder`` (which the authors'
Keras ``ConvolutionalEncoder`` / ``DeconvolutionalDecoder`` replicate), not the paper's Table 7 where
they differ: conv3/conv4 use 2x2 kernels, and the last transposed convolution outputs *logits*.

Shapes (NCHW, 64x64xC input, latent dim 10)::

    input   (N, C, 64, 64)
    e/1     Conv 32 k4 s2 p1, ReLU      (N, 32, 32, 32)
    e/2     Conv 32 k4 s2 p1, ReLU      (N, 32, 16, 16)
    e/3     Conv 64 k2 s2 p0, ReLU      (N, 64, 8, 8)
    e/4     Conv 64 k2 s2 p0, ReLU      (N, 64, 4, 4)
    e/5     Flatten                     (N, 1024)
    e/6     Linear 256, ReLU            (N, 256)
    mean    Linear 10                   (N, 10)
    log_var Linear 10                   (N, 10)
    sampled mean + exp(log_var/2)*eps   (N, 10)
    d/1     Linear 256, ReLU            (N, 256)
    d/2     Linear 1024, ReLU           (N, 1024)   -> reshape (N, 64, 4, 4)
    d/3     ConvT 64 k4 s2 p1, ReLU     (N, 64, 8, 8)
    d/4     ConvT 32 k4 s2 p1, ReLU     (N, 32, 16, 16)
    d/5     ConvT 32 k4 s2 p1, ReLU     (N, 32, 32, 32)
    d/6     ConvT C k4 s2 p1, logits    (N, C, 64, 64)

TF "same" padding with k=4, s=2 on even inputs pads 1 on each side (``padding=1``); k=2, s=2 needs
none. Flatten/reshape act on NCHW rather than Keras' NHWC: a fixed feature permutation, irrelevant
for training from scratch and for CKA/Procrustes, which are permutation invariant (§1.1).
"""

from __future__ import annotations

from typing import Iterator

import torch.nn.functional as F
from torch import Tensor, nn

from vaetransfer.layers import LAYER_NAMES
from vaetransfer.models.common import VAE, attr_name, conv_trunk

# Layers that own weights, in LAYER_NAMES order; e/5 (flatten) and sampled have none.
WEIGHTED_LAYERS: tuple[str, ...] = tuple(
    name for name in LAYER_NAMES if name not in ("input", "e/5", "sampled")
)
_attr = attr_name


class ConvVAE(VAE):
    """disentanglement_lib convolutional VAE (spec §1.1) for 64x64xC images.

    Submodules are attributes ``e1 e2 e3 e4 e6 mean log_var d1 .. d6`` (state-dict keys
    ``e1.weight`` etc.); :meth:`layer_modules` maps the LAYER_NAMES names onto them so transfer
    experiments can freeze or re-initialise layers by name.
    """

    ARCHITECTURE = "conv"
    LAYERS = LAYER_NAMES
    WEIGHTED = WEIGHTED_LAYERS

    def __init__(self, channels: int = 1, latent_dim: int = 10) -> None:
        super().__init__()
        self.channels = int(channels)
        self.latent_dim = int(latent_dim)
        c = self.channels
        self.e1, self.e2, self.e3, self.e4 = conv_trunk(c)
        self.e6 = nn.Linear(1024, 256)
        self.mean = nn.Linear(256, latent_dim)
        self.log_var = nn.Linear(256, latent_dim)
        self.d1 = nn.Linear(latent_dim, 256)
        self.d2 = nn.Linear(256, 1024)
        self.d3 = nn.ConvTranspose2d(64, 64, kernel_size=4, stride=2, padding=1)
        self.d4 = nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1)
        self.d5 = nn.ConvTranspose2d(32, 32, kernel_size=4, stride=2, padding=1)
        self.d6 = nn.ConvTranspose2d(32, c, kernel_size=4, stride=2, padding=1)
        self.reset_parameters()

    def _encoder_trace(self, x: Tensor) -> Iterator[tuple[str, Tensor]]:
        """Yield (name, output) for e/1 .. log_var, in LAYER_NAMES order."""
        h = x
        for name in ("e/1", "e/2", "e/3", "e/4"):
            h = F.relu(getattr(self, _attr(name))(h))
            yield name, h
        h = h.flatten(1)
        yield "e/5", h
        h = F.relu(self.e6(h))
        yield "e/6", h
        yield "mean", self.mean(h)
        yield "log_var", self.log_var(h)

    def _decoder_trace(self, z: Tensor) -> Iterator[tuple[str, Tensor]]:
        """Yield (name, output) for d/1 .. d/6 (d/6 = logits, no activation)."""
        h = F.relu(self.d1(z))
        yield "d/1", h
        h = F.relu(self.d2(h))
        yield "d/2", h
        h = h.view(-1, 64, 4, 4)
        for name in ("d/3", "d/4", "d/5"):
            h = F.relu(getattr(self, _attr(name))(h))
            yield name, h
        yield "d/6", self.d6(h)
