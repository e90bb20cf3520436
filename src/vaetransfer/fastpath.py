"""Training speed-ups that keep float32 numerics: :func:`accelerate` (model), :func:`make_adam`
(optimiser) and :func:`configure_backends` (process-wide flags), each choice behind a switch of
:class:`FastPath` (issue "Fast training" §5; measured in benchmarks/README.md, "Training throughput").

Each choice re-expresses the computation: parameters, ``state_dict`` and checkpoints are unchanged,
outputs and gradients equal the plain model's up to float32 rounding, and two runs with the same
seed and thread count stay bit-identical on CPU.

Measured on the conv VAE, batch 64, 64x64x1, one thread, a 2-core AMD EPYC VM (CPU ms/step,
medians of 50 steps, all variants interleaved in one process; benchmarks/README.md):

- ``fused_adam``: ``torch.optim.Adam(fused=True)``, one pass over each parameter instead of ~10
  elementwise ops: 94.5 -> 93.2 (FC VAE, 14 M parameters: 103 -> 80).
- ``subpixel_deconv``: a ConvTranspose2d k4 s2 p1 with few output channels (the last layer,
  32 -> C) becomes a 2x2 convolution to 4C channels plus a pixel interleave ("sub-pixel
  convolution"): oneDNN spends ~18 ms on that layer's 0.2 GFLOP, the rewrite ~13. 93.2 -> 89.4.
  Wider transposed convolutions are faster as they are and are left alone.
- ``channels_last``: convolution inputs reach oneDNN in NHWC, its native layout, so it does not
  reorder activations and gradients around each call: 89.4 -> 85.7. Only activations change
  layout (forward pre-hooks); parameters, gradients and optimiser state stay NCHW, so checkpoints
  and resume states are as before.
- ``compile``: ``torch.compile`` (inductor) of the model, off by default: 85.7 -> 86.7, no gain on
  CPU (convolutions stay oneDNN calls) for ~40 s of cold compilation; it may pay on CUDA, where it
  cuts kernel launches. Without a C++ compiler, or if compilation fails, the model runs eagerly.

On CUDA (not measured: no GPU was lent) the layout and rewrite switches default off, fused Adam
stays on, cuDNN autotuning (``cudnn_benchmark``) stays off as it picks kernels by timing, and TF32,
PyTorch's default for cuDNN convolutions on Ampere and newer, is turned off (``tf32``).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class FastPath:
    """Which speed-ups to use; ``None`` = the device's default (:meth:`resolve`)."""

    channels_last: bool | None = None  # CPU: True, CUDA: False
    subpixel_deconv: bool | None = None  # CPU: True, CUDA: False
    fused_adam: bool = True
    compile: bool = False
    cudnn_benchmark: bool = False  # CUDA only; True trades run-to-run determinism for speed
    tf32: bool = False  # CUDA only; True lets cuDNN/cuBLAS round float32 inputs to 10-bit mantissas

    def resolve(self, device: str | torch.device) -> "FastPath":
        """Fill the ``None`` switches with ``device``'s defaults."""
        cpu = torch.device(device).type == "cpu"
        fill = {f.name: cpu for f in dataclasses.fields(self) if getattr(self, f.name) is None}
        return dataclasses.replace(self, **fill)


#: Everything off: the plain model and optimiser (what train() did before this module).
PLAIN = FastPath(channels_last=False, subpixel_deconv=False, fused_adam=False, compile=False)


class SubpixelConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d(k=4, s=2, p=1) computed as one 2x2 convolution plus a pixel interleave.

    Output pixel (2i+a, 2j+b) sums input pixels i-1+a..i+a (rows), j-1+b..j+b (columns) with taps
    3-a-2t, 3-b-2u (t, u in {0, 1}): a 2x2 convolution of the input padded by 1, with the 4 phases
    (a, b) as 4x output channels, gives every phase, shifted by (a, b). Same parameters and
    state_dict as the module it replaces (``accelerate`` swaps the class in place).
    """

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is not None:
            return super().forward(x, output_size)
        ci, co = self.weight.shape[:2]
        # flipped tap 3-k = a + 2t: split it into (t, a), then phases to output channels c*4+a*2+b
        kernel = self.weight.flip(2, 3).reshape(ci, co, 2, 2, 2, 2).permute(1, 3, 5, 0, 2, 4)
        bias = None if self.bias is None else self.bias.repeat_interleave(4)
        y = F.conv2d(x, kernel.reshape(co * 4, ci, 2, 2), bias, padding=1)  # (N, 4co, H+1, W+1)
        n, _, h1, w1 = y.shape
        sn, sc, sh, sw = y.stride()
        # phase (a, b) of output row i, column j is y[:, c*4+a*2+b, i+a, j+b]: one strided view
        phases = y.as_strided((n, co, h1 - 1, 2, w1 - 1, 2), (sn, 4 * sc, sh, 2 * sc + sh, sw, sc + sw))
        return phases.reshape(n, co, 2 * (h1 - 1), 2 * (w1 - 1))


#: Rewrite transposed convolutions with at most this many outputs (faster for 1, slower for 32, 64).
SUBPIXEL_MAX_OUT_CHANNELS = 4


def _subpixel_eligible(m: nn.Module) -> bool:
    return (
        type(m) is nn.ConvTranspose2d and m.kernel_size == (4, 4) and m.stride == (2, 2)
        and m.padding == (1, 1) and m.output_padding == (0, 0) and m.dilation == (1, 1)
        and m.groups == 1 and m.padding_mode == "zeros" and m.out_channels <= SUBPIXEL_MAX_OUT_CHANNELS
    )


def channels_last(x: Tensor) -> Tensor:
    """``x`` (N, C, H, W) in NHWC memory order; a free re-striding when C = 1 and x needs no grad."""
    if x.dim() != 4 or (x.stride(1) == 1 and x.is_contiguous(memory_format=torch.channels_last)):
        return x
    if x.shape[1] == 1 and x.is_contiguous() and not x.requires_grad:  # same bytes, NHWC strides
        return x.as_strided(x.shape, (x.stride(0), 1, x.stride(2), x.stride(3)))
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)


def _channels_last_input(module: nn.Module, args: tuple) -> tuple | None:
    x = args[0] if args else None
    if isinstance(x, Tensor) and x.dim() == 4:
        return (channels_last(x), *args[1:])
    return None


def accelerate(model: nn.Module, device: str | torch.device, options: FastPath | None = None) -> nn.Module:
    """Apply ``options`` (default ``FastPath()``, resolved for ``device``) to ``model`` in place.

    Call after ``model.to(device)``; parameters and state_dict are untouched, so checkpoints load
    into a plain model and vice versa. Also calls :func:`configure_backends`. Returns ``model``.
    """
    opts = (options or FastPath()).resolve(device)
    configure_backends(device, opts)
    if opts.subpixel_deconv:
        for m in model.modules():
            if _subpixel_eligible(m):
                m.__class__ = SubpixelConvTranspose2d
    if opts.channels_last:
        for m in model.modules():
            hooked = _channels_last_input in m._forward_pre_hooks.values()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and not hooked:
                m.register_forward_pre_hook(_channels_last_input)
    reason = compile_unavailable_reason() if opts.compile else None
    if reason:
        _logger.warning("not compiling the model: %s", reason)
    elif opts.compile:
        torch._dynamo.config.suppress_errors = True  # a failing compile runs eagerly instead
        model.compile(dynamic=False)
    return model


def compile_unavailable_reason() -> str | None:
    """Why ``torch.compile`` cannot work here (no C++ compiler for inductor's CPU kernels), or None."""
    if not hasattr(nn.Module, "compile"):
        return f"torch {torch.__version__} has no nn.Module.compile"
    try:
        from torch._inductor import config
    except Exception as exc:  # noqa: BLE001 - any import failure means: no inductor
        return f"torch._inductor unavailable: {exc}"
    cxx = config.cpp.cxx[-1] or "g++"
    if shutil.which(str(cxx)) is None:  # inductor builds its CPU kernels (and CUDA wrappers) with it
        return f"no C++ compiler {cxx!r} on PATH"
    return None


def configure_backends(device: str | torch.device, options: FastPath | None = None) -> None:
    """Process-wide flags: on CUDA, cuDNN autotuning and TF32 per ``options`` (off by default)."""
    opts = (options or FastPath()).resolve(device)
    if torch.device(device).type != "cuda":
        return
    torch.backends.cudnn.benchmark = opts.cudnn_benchmark
    precision = "tf32" if opts.tf32 else "ieee"
    if hasattr(torch.backends.cudnn, "conv"):  # the fp32_precision API (torch >= 2.9)
        torch.backends.cudnn.conv.fp32_precision = precision
        torch.backends.cuda.matmul.fp32_precision = precision
    else:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = opts.tf32


def make_adam(
    params: Iterable[Tensor], device: str | torch.device, options: FastPath | None = None, **adam_kwargs
) -> torch.optim.Adam:
    """``torch.optim.Adam(params, **adam_kwargs)``, fused when ``options.fused_adam`` and supported."""
    opts = (options or FastPath()).resolve(device)
    params = list(params)
    optimizer = None
    if opts.fused_adam and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
        try:
            optimizer = torch.optim.Adam(params, fused=True, **adam_kwargs)
        except (RuntimeError, TypeError):  # an older torch without fused Adam on this device
            pass
    optimizer = optimizer or torch.optim.Adam(params, **adam_kwargs)
    optimizer.register_load_state_dict_post_hook(match_param_layout)
    return optimizer


def match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each optimiser state tensor its parameter's strides (a load_state_dict post-hook).

    The fused CPU Adam walks parameter, gradient and state memory in the same linear order, so a
    state restored in another layout than its parameter would be silently misapplied (measured).
    """
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, Tensor) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
