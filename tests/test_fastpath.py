"""vaetransfer.fastpath: the speed-ups change neither results (up to float32 rounding) nor
parameters, and keep training bit-identical run to run."""

import copy
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vaetransfer import fastpath
from vaetransfer.fastpath import PLAIN, FastPath, SubpixelConvTranspose2d, accelerate, make_adam
from vaetransfer.models import ARCHITECTURES, images_to_tensor
from vaetransfer.objectives import objective_terms
from vaetransfer.train import train_step

REPO = Path(__file__).resolve().parents[1]
VAES = [name for name, cls in ARCHITECTURES.items() if hasattr(cls, "decode")]
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=NO_CUDA)]


def images(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return ((rng.random((n, 64, 64, 1)) < 0.2) * 255).astype(np.uint8)


def loss_and_grads(model, x, seed=1):
    gen = torch.Generator(device=x.device).manual_seed(seed)
    output = model(x, generator=gen)
    loss, _ = objective_terms("beta_vae", 1.0, output, x, 0)
    return output, torch.autograd.grad(loss, list(model.parameters()))


def assert_close(actual, expected, rtol=1e-5):
    """Equal up to float32 rounding, relative to each tensor's largest entry."""
    for a, e in zip(actual, expected, strict=True):
        scale = e.abs().max().clamp_min(1e-12)
        assert ((a - e).abs().max() / scale).item() < rtol, (a - e).abs().max()


@pytest.mark.parametrize("ci, co, size", [(32, 1, 32), (8, 3, 5), (16, 4, 7), (4, 32, 4)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_subpixel_deconv_equals_conv_transpose(ci, co, size, layout):
    torch.manual_seed(0)
    plain = nn.ConvTranspose2d(ci, co, kernel_size=4, stride=2, padding=1)
    fast = copy.deepcopy(plain)
    fast.__class__ = SubpixelConvTranspose2d
    x = torch.randn(3, ci, size, size).contiguous(memory_format=layout).requires_grad_()
    g = torch.randn(3, co, 2 * size, 2 * size)
    outs = []
    for m in (plain, fast):
        y = m(x)
        outs.append((y, *torch.autograd.grad(y, [x, m.weight, m.bias], g)))
    assert outs[1][0].shape == outs[0][0].shape
    assert_close(outs[1], outs[0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("arch", VAES)
def test_accelerated_model_matches_plain(arch, device):
    torch.manual_seed(0)
    plain = ARCHITECTURES[arch](channels=1, latent_dim=10).to(device)
    fast = accelerate(copy.deepcopy(plain), device)
    x = images_to_tensor(images(), device)
    out_plain, grads_plain = loss_and_grads(plain, x)
    out_fast, grads_fast = loss_and_grads(fast, x)
    assert_close(out_fast, out_plain)
    assert_close(grads_fast, grads_plain, rtol=1e-4)
    if arch == "conv" and device == "cpu":
        assert type(fast.d6) is SubpixelConvTranspose2d and type(fast.d5) is nn.ConvTranspose2d
    # parameters untouched: same keys, shapes, strides, so checkpoints load either way
    assert list(fast.state_dict()) == list(plain.state_dict())
    for p, q in zip(fast.parameters(), plain.parameters()):
        assert p.stride() == q.stride() and p.is_contiguous()
    reloaded = ARCHITECTURES[arch](channels=1, latent_dim=10).to(device)
    reloaded.load_state_dict(fast.state_dict())
    accelerate(reloaded, device).load_state_dict(plain.state_dict())


def run_steps(arch, options, steps=4, device="cpu"):
    """``steps`` train_step updates from a fixed init; returns (final parameters, losses)."""
    model = ARCHITECTURES[arch](channels=1, latent_dim=10)
    model.reset_parameters(generator=torch.Generator().manual_seed(0))
    model = accelerate(model.to(device), device, options)
    optimizer = make_adam(model.parameters(), device, options, lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator(device=device).manual_seed(1)
    data, losses = images(64), []
    for step in range(steps):
        x = images_to_tensor(data[step % 2 * 32 : step % 2 * 32 + 32], device)
        losses.append(train_step(model, optimizer, x, "beta_vae", 1.0, step, gen)["loss"].item())
    return [p.detach().cpu().clone() for p in model.parameters()], losses


def digest(params, losses) -> str:
    """A hash of the exact bytes of a run's final parameters and losses."""
    return hashlib.sha256(b"".join(p.numpy().tobytes() for p in params) + repr(losses).encode()).hexdigest()


@pytest.mark.parametrize("arch", VAES)
def test_training_is_bit_identical_run_to_run(arch):
    first, second = run_steps(arch, FastPath()), run_steps(arch, FastPath())
    assert first[1] == second[1]
    assert all(torch.equal(a, b) for a, b in zip(first[0], second[0]))
    # and in a fresh process with the same thread count (as a resumed run is)
    code = (f"import torch; torch.set_num_threads({torch.get_num_threads()}); "
            "from tests.test_fastpath import FastPath, digest, run_steps; "
            f"print(digest(*run_steps({arch!r}, FastPath())))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == digest(*first)
    plain = run_steps(arch, PLAIN)  # and equal to plain training up to float noise
    np.testing.assert_allclose(first[1], plain[1], rtol=1e-5)
    for a, b in zip(first[0], plain[0]):  # Adam moves a weight by about lr (1e-4) per step at most
        assert (a - b).abs().max() < 2 * 4 * 1e-4


def test_fused_adam_equals_adam_and_fixes_loaded_layouts():
    torch.manual_seed(0)
    start, grads = torch.randn(8, 3, 4, 4), [torch.randn(8, 3, 4, 4) for _ in range(3)]
    results = []
    for fused, restride in [(False, False), (True, False), (True, True)]:
        p = nn.Parameter(start.clone())
        opt = make_adam([p], "cpu", FastPath(fused_adam=fused), lr=0.1)
        assert bool(opt.defaults["fused"]) is fused
        p.grad = grads[0].clone()
        opt.step()
        state = opt.state_dict()
        if restride:  # a state saved in another layout than the parameter (e.g. channels-last)
            for s in state["state"].values():
                for key in ("exp_avg", "exp_avg_sq"):
                    s[key] = s[key].contiguous(memory_format=torch.channels_last)
        opt = make_adam([p], "cpu", FastPath(fused_adam=fused), lr=0.1)
        opt.load_state_dict(state)
        assert all(v.stride() == p.stride() for v in opt.state[p].values() if v.dim())
        for g in grads[1:]:
            p.grad = g.clone()
            opt.step()
        results.append(p.detach().clone())
    assert_close(results[1:], [results[0]] * 2)


def test_channels_last_helper():
    x = torch.rand(2, 1, 8, 8)
    y = fastpath.channels_last(x)
    assert y.data_ptr() == x.data_ptr() and y.stride() == (64, 1, 8, 1) and torch.equal(x, y)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    y = fastpath.channels_last(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, y) and y.requires_grad
    assert fastpath.channels_last(y) is y


def test_defaults_per_device():
    assert FastPath().resolve("cpu") == FastPath(channels_last=True, subpixel_deconv=True)
    assert FastPath().resolve("cuda") == FastPath(channels_last=False, subpixel_deconv=False)
    assert FastPath(channels_last=False).resolve("cpu").channels_last is False
    model = accelerate(ARCHITECTURES["conv"](), "cpu", PLAIN)
    assert type(model.d6) is nn.ConvTranspose2d and not model.e1._forward_pre_hooks


def test_compile_falls_back_without_compiler(monkeypatch):
    monkeypatch.setattr(fastpath.shutil, "which", lambda name: None)
    assert "no C++ compiler" in fastpath.compile_unavailable_reason()
    model = accelerate(ARCHITECTURES["conv"](), "cpu", FastPath(compile=True))
    assert model._compiled_call_impl is None  # left eager
    out, _ = loss_and_grads(model, images_to_tensor(images(4)))
    assert out.logits.shape == (4, 1, 64, 64)


@pytest.mark.slow
@pytest.mark.skipif(fastpath.compile_unavailable_reason() is not None, reason="torch.compile unavailable")
def test_compiled_model_matches_plain():
    """torch.compile of the accelerated conv VAE (~30 s of compilation) changes nothing either."""
    torch.manual_seed(0)
    plain = ARCHITECTURES["conv"]()
    fast = accelerate(copy.deepcopy(plain), "cpu", FastPath(compile=True))
    assert fast._compiled_call_impl is not None
    x = images_to_tensor(images())
    out_plain, grads_plain = loss_and_grads(plain, x)
    out_fast, grads_fast = loss_and_grads(fast, x)
    assert_close(out_fast, out_plain)
    assert_close(grads_fast, grads_plain, rtol=1e-4)


@NO_CUDA
def test_cuda_backends_stay_float32():
    accelerate(ARCHITECTURES["conv"]().cuda(), "cuda")
    assert torch.backends.cudnn.benchmark is False
    if hasattr(torch.backends.cudnn, "conv"):
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    else:
        assert not torch.backends.cudnn.allow_tf32



def test_training_with_fastpath_is_deterministic_and_close_to_plain(tmp_path):
    """TrainConfig.fastpath: the same training up to float rounding, bit-identical run to run."""
    import numpy as np

    from vaetransfer.train import TrainConfig, train

    from .test_train import random_squares

    images = random_squares(64)
    finals = {}
    for name, fast in (("plain", False), ("fast1", True), ("fast2", True)):
        cfg = TrainConfig(dataset="s", objective="beta_vae", hparam=1.0, seed=0, steps=6, checkpoint_steps=[6],
                          batch_size=16, fastpath=fast)
        train(cfg, images, np.arange(64), {6: tmp_path / f"{name}.pt"}, tmp_path / f"{name}.parquet", progress=False)
        finals[name] = torch.load(tmp_path / f"{name}.pt", weights_only=True)["state_dict"]
    for key in finals["plain"]:
        assert torch.equal(finals["fast1"][key], finals["fast2"][key]), key
        torch.testing.assert_close(finals["fast1"][key], finals["plain"][key], rtol=1e-3, atol=1e-5)
