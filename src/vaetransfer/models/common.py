"""What every architecture shares: the forward-pass record, input conversion, reparameterisation,
and Keras-default initialisation of named layers (spec reference.md §1)."""

from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn


class VAEOutput(NamedTuple):
    """One VAE forward pass. ``mean, log_var, z``: (N, latent_dim); ``logits``: (N, C, 64, 64)."""

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


def attr_name(layer: str) -> str:
    """Attribute name of a weight-bearing layer: 'e/1' -> 'e1', 'mean' -> 'mean'."""
    return layer.replace("/", "")


class NamedLayers(nn.Module):
    """Base of every architecture: weight-bearing layers addressed by their recorded names.

    Subclasses set ``ARCHITECTURE`` (the registry key), ``LAYERS`` (recorded representations, in
    order) and ``WEIGHTED`` (the names that own weights, each an attribute ``attr_name(name)``).
    Transfer experiments freeze or re-initialise layers by these names.
    """

    ARCHITECTURE: str = ""
    LAYERS: tuple[str, ...] = ()
    WEIGHTED: tuple[str, ...] = ()

    def layer_modules(self) -> dict[str, nn.Module]:
        """Weight-bearing layer name -> its module, in ``WEIGHTED`` order."""
        return {name: getattr(self, attr_name(name)) for name in self.WEIGHTED}

    def reset_parameters(
        self, layers: Iterable[str] | None = None, generator: torch.Generator | None = None
    ) -> None:
        """Keras defaults: glorot (xavier) uniform weights, zero biases (spec §1.1).

        ``layers`` restricts the reset to some names of ``WEIGHTED`` (default: all); ``generator``
        (a CPU generator) makes the draw independent of torch's global RNG state. Glorot is
        symmetric in fan-in/fan-out, so ConvTranspose2d's swapped weight layout is fine.
        """
        modules = self.layer_modules()
        names = tuple(modules) if layers is None else tuple(layers)
        unknown = [n for n in names if n not in modules]
        if unknown:
            raise KeyError(f"no weight-bearing layer {unknown}; valid: {list(modules)}")
        for name in names:
            for module in _leaves(modules[name]):
                with torch.no_grad():
                    # Drawn on CPU then copied, so a CPU generator also serves a model on GPU.
                    weight = torch.empty(module.weight.shape, dtype=module.weight.dtype)
                    nn.init.xavier_uniform_(weight, generator=generator)
                    module.weight.copy_(weight)
                    nn.init.zeros_(module.bias)


class VAE(NamedLayers):
    """Base of the VAEs: subclasses yield their named layer outputs from ``_encoder_trace(x)``
    (up to ``mean`` and ``log_var``) and ``_decoder_trace(z)`` (ending with the logits), in
    ``LAYERS`` order; encoding, sampling, decoding and activation records are defined once here.
    """

    channels: int
    latent_dim: int

    def model_args(self) -> dict[str, int]:
        """Constructor kwargs, stored in checkpoints so ``cls(**args)`` rebuilds the model."""
        return {"channels": self.channels, "latent_dim": self.latent_dim}

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (N, C, 64, 64) in [0, 1] -> (mean, log_var), each (N, latent_dim)."""
        outputs = dict(self._encoder_trace(x))
        return outputs["mean"], outputs["log_var"]

    def decode(self, z: Tensor) -> Tensor:
        """z (N, latent_dim) -> Bernoulli logits (N, C, 64, 64)."""
        *_, (_, logits) = self._decoder_trace(z)
        return logits.view(-1, self.channels, 64, 64)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        """Encode, sample one z per example with ``generator``, decode. x: (N, C, 64, 64)."""
        mean, log_var = self.encode(x)
        z = sample_latent(mean, log_var, generator)
        return VAEOutput(mean=mean, log_var=log_var, z=z, logits=self.decode(z))

    def activations(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """All ``LAYERS`` outputs, in order, unflattened (spec §1.4).

        As in the authors' ``get_full_activations``, the decoder runs on the *sampled* z, so the
        decoder activations are stochastic; seed ``generator`` to make them reproducible.
        """
        acts: dict[str, Tensor] = {"input": x}
        acts.update(self._encoder_trace(x))
        acts["sampled"] = sample_latent(acts["mean"], acts["log_var"], generator)
        acts.update(self._decoder_trace(acts["sampled"]))
        assert tuple(acts) == self.LAYERS  # the traces must follow LAYERS exactly
        return acts

    def _encoder_trace(self, x: Tensor):
        raise NotImplementedError

    def _decoder_trace(self, z: Tensor):
        raise NotImplementedError


def conv_trunk(channels: int) -> list[nn.Conv2d]:
    """The four convolutions shared by the conv VAE's encoder and the classifier (spec §1.1):
    32 k4 s2 p1, 32 k4 s2 p1, 64 k2 s2 p0, 64 k2 s2 p0 (TF "same" padding on even inputs)."""
    return [
        nn.Conv2d(channels, 32, kernel_size=4, stride=2, padding=1),
        nn.Conv2d(32, 32, kernel_size=4, stride=2, padding=1),
        nn.Conv2d(32, 64, kernel_size=2, stride=2, padding=0),
        nn.Conv2d(64, 64, kernel_size=2, stride=2, padding=0),
    ]


def _leaves(module: nn.Module) -> list[nn.Module]:
    """The module itself if it has weights, else its weighted children (e.g. a ModuleList of heads)."""
    if hasattr(module, "weight"):
        return [module]
    return [m for m in module.modules() if hasattr(m, "weight") and m is not module]
