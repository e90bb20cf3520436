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

from typing import Iterable, Iterator, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaetransfer.layers import LAYER_NAMES

# Layers that own weights, in LAYER_NAMES order; e/5 (flatten) and sampled have none.
WEIGHTED_LAYERS: tuple[str, ...] = tuple(
    name for name in LAYER_NAMES if name not in ("input", "e/5", "sampled")
)


class VAEOutput(NamedTuple):
    """One forward pass. ``mean, log_var, z``: (N, latent_dim); ``logits``: (N, C, 64, 64)."""

    mean: Tensor
    log_var: Tensor
    z: Tensor
    logits: Tensor


def images_to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> Tensor:
    """uint8 images (N, 64, 64, C) NHWC in 0..255 -> float32 (N, C, 64, 64) NCHW in [0, 1].

    The bytes are moved to ``device`` before the float conversion so that a host-to-GPU copy
    carries 1 byte per pixel instead of 4. ``images`` may be a ``np.memmap`` slice.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    raw = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return raw.permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()


def sample_latent(mean: Tensor, log_var: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Reparameterisation z = mean + exp(0.5 * log_var) * eps, eps ~ N(0, I) (Kingma & Welling 2014).

    ``eps`` is drawn with ``generator`` (which must live on ``mean.device``), or with torch's
    global generator when None. Like the authors' Keras ``Sampling`` layer it always samples, also
    in eval mode (spec aesthetics.md §10). Shapes: all (N, latent_dim).
    """
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * log_var) * eps


def _attr(layer: str) -> str:
    """Attribute name of a weight-bearing layer: 'e/1' -> 'e1', 'mean' -> 'mean'."""
    return layer.replace("/", "")


class ConvVAE(nn.Module):
    """disentanglement_lib convolutional VAE (spec §1.1) for 64x64xC images.

    Submodules are attributes ``e1 e2 e3 e4 e6 mean log_var d1 .. d6`` (state-dict keys
    ``e1.weight`` etc.); :meth:`layer_modules` maps the LAYER_NAMES names onto them so transfer
    experiments can freeze or re-initialise layers by name.
    """

    def __init__(self, channels: int = 1, latent_dim: int = 10) -> None:
        super().__init__()
        self.channels = int(channels)
        self.latent_dim = int(latent_dim)
        c = self.channels
        self.e1 = nn.Conv2d(c, 32, kernel_size=4, stride=2, padding=1)
        self.e2 = nn.Conv2d(32, 32, kernel_size=4, stride=2, padding=1)
        self.e3 = nn.Conv2d(32, 64, kernel_size=2, stride=2, padding=0)
        self.e4 = nn.Conv2d(64, 64, kernel_size=2, stride=2, padding=0)
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

    def model_args(self) -> dict[str, int]:
        """Constructor kwargs, stored in checkpoints so :func:`ConvVAE(**args)` rebuilds the model."""
        return {"channels": self.channels, "latent_dim": self.latent_dim}

    def layer_modules(self) -> dict[str, nn.Module]:
        """Weight-bearing LAYER_NAMES (e/1..e/4, e/6, mean, log_var, d/1..d/6) -> their modules."""
        return {name: getattr(self, _attr(name)) for name in WEIGHTED_LAYERS}

    def reset_parameters(
        self, layers: Iterable[str] | None = None, generator: torch.Generator | None = None
    ) -> None:
        """Keras defaults: glorot (xavier) uniform weights, zero biases (spec §1.1).

        ``layers`` restricts the reset to some names of :data:`WEIGHTED_LAYERS` (default: all);
        ``generator`` (a CPU generator) makes the draw independent of torch's global RNG state.
        Glorot is symmetric in fan-in/fan-out, so ConvTranspose2d's swapped weight layout is fine.
        """
        modules = self.layer_modules()
        names = WEIGHTED_LAYERS if layers is None else tuple(layers)
        unknown = [n for n in names if n not in modules]
        if unknown:
            raise KeyError(f"no weight-bearing layer {unknown}; valid: {list(modules)}")
        for name in names:
            module = modules[name]
            with torch.no_grad():
                # Drawn on CPU then copied, so a CPU generator also serves a model on GPU.
                weight = torch.empty(module.weight.shape, dtype=module.weight.dtype)
                nn.init.xavier_uniform_(weight, generator=generator)
                module.weight.copy_(weight)
                nn.init.zeros_(module.bias)

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

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (N, C, 64, 64) in [0, 1] -> (mean, log_var), each (N, latent_dim)."""
        outputs = dict(self._encoder_trace(x))
        return outputs["mean"], outputs["log_var"]

    def decode(self, z: Tensor) -> Tensor:
        """z (N, latent_dim) -> Bernoulli logits (N, C, 64, 64)."""
        return dict(self._decoder_trace(z))["d/6"]

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        """Encode, sample one z per example with ``generator``, decode. x: (N, C, 64, 64)."""
        mean, log_var = self.encode(x)
        z = sample_latent(mean, log_var, generator)
        return VAEOutput(mean=mean, log_var=log_var, z=z, logits=self.decode(z))

    def activations(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """All 16 LAYER_NAMES outputs, in order, unflattened (spec §1.4).

        As in the authors' ``get_full_activations``, the decoder runs on the *sampled* z, so the
        decoder activations are stochastic; seed ``generator`` to make them reproducible.
        """
        acts: dict[str, Tensor] = {"input": x}
        acts.update(self._encoder_trace(x))
        acts["sampled"] = sample_latent(acts["mean"], acts["log_var"], generator)
        acts.update(self._decoder_trace(acts["sampled"]))
        assert tuple(acts) == LAYER_NAMES  # the traces above must follow LAYER_NAMES exactly
        return acts
