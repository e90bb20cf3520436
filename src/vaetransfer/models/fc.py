"""The fully-connected VAE as the authors ran it (spec reference.md §1.2, paper Table 8 as coded).

disentanglement_lib's ``fc_encoder`` / ``fc_decoder``. The paper's Table 8 lists the decoder as
"256, 1200, 1200 (tanh)"; the code (what was run) has three Dense 1200 tanh layers and a linear
output of 4096·C logits. Shapes (latent dim 10)::

    input   (N, C, 64, 64)
    e/1     Flatten                     (N, 4096 C)
    e/2     Linear 1200, ReLU           (N, 1200)
    e/3     Linear 1200, ReLU           (N, 1200)
    mean    Linear 10                   (N, 10)
    log_var Linear 10                   (N, 10)
    sampled mean + exp(log_var/2)*eps   (N, 10)
    d/1     Linear 1200, tanh           (N, 1200)
    d/2     Linear 1200, tanh           (N, 1200)
    d/3     Linear 1200, tanh           (N, 1200)
    d/4     Linear 4096 C, logits       (N, 4096 C)  -> reshape (N, C, 64, 64)
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor, nn

from vaetransfer.layers import FC_LAYER_NAMES
from vaetransfer.models.common import VAE

HIDDEN = 1200


class FCVAE(VAE):
    """disentanglement_lib fully-connected VAE (spec §1.2) for 64x64xC images.

    Submodules ``e2 e3 mean log_var d1 d2 d3 d4``; same interface as :class:`ConvVAE`.
    """

    ARCHITECTURE = "fc"
    LAYERS = FC_LAYER_NAMES
    WEIGHTED = ("e/2", "e/3", "mean", "log_var", "d/1", "d/2", "d/3", "d/4")

    def __init__(self, channels: int = 1, latent_dim: int = 10) -> None:
        super().__init__()
        self.channels = int(channels)
        self.latent_dim = int(latent_dim)
        pixels = 64 * 64 * self.channels
        self.e2 = nn.Linear(pixels, HIDDEN)
        self.e3 = nn.Linear(HIDDEN, HIDDEN)
        self.mean = nn.Linear(HIDDEN, latent_dim)
        self.log_var = nn.Linear(HIDDEN, latent_dim)
        self.d1 = nn.Linear(latent_dim, HIDDEN)
        self.d2 = nn.Linear(HIDDEN, HIDDEN)
        self.d3 = nn.Linear(HIDDEN, HIDDEN)
        self.d4 = nn.Linear(HIDDEN, pixels)
        self.reset_parameters()

    def _encoder_trace(self, x: Tensor) -> Iterator[tuple[str, Tensor]]:
        h = x.flatten(1)
        yield "e/1", h
        h = torch.relu(self.e2(h))
        yield "e/2", h
        h = torch.relu(self.e3(h))
        yield "e/3", h
        yield "mean", self.mean(h)
        yield "log_var", self.log_var(h)

    def _decoder_trace(self, z: Tensor) -> Iterator[tuple[str, Tensor]]:
        h = z
        for name in ("d/1", "d/2", "d/3"):
            h = torch.tanh(getattr(self, name.replace("/", ""))(h))
            yield name, h
        yield "d/4", self.d4(h)
