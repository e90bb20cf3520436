"""Training throughput: steps/s at batch 64 on 64x64x1 inputs, a plain PyTorch loop vs vaetransfer's.

Usage: python benchmarks/train.py [--steps N] [--threads 1 [2 ...]] [--device cpu|cuda]
                                  [--repeats R] [--ablate] [--compile] [--arch conv ...]

For each VAE of ``vaetransfer.models.ARCHITECTURES`` (classes without ``decode`` are skipped):

- ``plain``: the textbook loop, a ``DataLoader(TensorDataset(float32 images), batch_size=64,
  shuffle=True)``, one model, ``Adam(lr=1e-4)``, ``zero_grad()``, the beta-VAE loss
  (``objective_terms("beta_vae", 1.0, ...)``);
- ``vaetransfer``: uint8 images in a ``np.memmap``, ``epoch_batches`` + ``images_to_tensor`` (uint8
  until on the device), ``keep_freed_memory()``, ``vaetransfer.train.train_step`` on a model and
  optimiser from ``vaetransfer.fastpath`` with its default switches;
- with ``--ablate``, the speed-ups added one at a time in between; with ``--compile``, a row with
  ``FastPath(compile=True)`` too (its cold compile time is in the first step's column).

Each row runs in its own subprocess (thread count and allocator settings are process-wide), all
with the same ``torch.set_num_threads``; rows are interleaved over ``--repeats`` rounds and the
fastest round is kept, as other load on a shared machine only ever slows a round down. The first
5 steps are warm-up, excluded (the first is shown on its own). Data: 16384 random sparse binary images.

The compute floor of each row: the FLOPs of one training step (``torch.utils.flop_counter``: the
convolutions and matrix products, forward and backward) divided by the float32 GEMM rate measured in
the same process at the same thread count (a square product, best of 5): an implementation that does
these FLOPs (direct or GEMM-based convolutions) cannot run faster than ``floor ms`` there. ``2x target`` is
half the plain loop's time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

N_IMAGES, BATCH, WARMUP = 16384, 64, 5

# (label, keep_freed_memory, FastPath kwargs); the last row without --ablate is the default FastPath.
PLAIN_FAST = {"channels_last": False, "subpixel_deconv": False, "fused_adam": False}
ABLATION = [
    ("uint8 + train_step", False, PLAIN_FAST),
    ("+ keep_freed_memory", True, PLAIN_FAST),
    ("+ fused Adam", True, {**PLAIN_FAST, "fused_adam": True}),
    ("+ sub-pixel deconv", True, {**PLAIN_FAST, "fused_adam": True, "subpixel_deconv": None}),
]
OURS = ("vaetransfer", True, {})
COMPILED = ("vaetransfer + compile", True, {"compile": True})


def _images():
    import numpy as np

    rng = np.random.default_rng(0)
    return (rng.random((N_IMAGES, 64, 64, 1)) < 0.2).astype(np.uint8) * 255


def _arch_class(name: str):
    try:
        from vaetransfer.models import ARCHITECTURES
    except ImportError:  # before the model registry: the conv VAE only
        from vaetransfer.models import ConvVAE

        ARCHITECTURES = {"conv": ConvVAE}
    return ARCHITECTURES[name]


def _stepper(spec: dict):
    """The row's training step, a function of the step number (0, 1, ...)."""
    import numpy as np
    import torch

    from vaetransfer import fastpath, runtime
    from vaetransfer.models import images_to_tensor
    from vaetransfer.objectives import objective_terms
    from vaetransfer.train import epoch_batches, train_step

    device = spec["device"]
    model = _arch_class(spec["arch"])(channels=1, latent_dim=10).to(device).train()
    gen = torch.Generator(device=device).manual_seed(0)
    images = _images()
    if spec["plain"]:
        data = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0).contiguous()
        dataset = torch.utils.data.TensorDataset(data)
        loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        batches = (x for _ in iter(int, 1) for (x,) in loader)

        def step(i):
            x = next(batches).to(device)
            output = model(x, generator=gen)
            loss, _ = objective_terms("beta_vae", 1.0, output, x, i)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return step
    if spec["keep"]:
        runtime.keep_freed_memory()
    path = os.path.join(spec["tmpdir"], "images.u8")
    memmap = np.memmap(path, dtype=np.uint8, mode="w+", shape=images.shape)
    memmap[:] = images
    options = fastpath.FastPath(**spec["fast"])
    fastpath.accelerate(model, device, options)
    optimizer = fastpath.make_adam(model.parameters(), device, options, lr=1e-4, betas=(0.9, 0.999),
                                   eps=1e-8)
    batches = epoch_batches(np.arange(N_IMAGES), BATCH, np.random.default_rng(0))

    def step(i):
        x = images_to_tensor(memmap[next(batches)], device)
        train_step(model, optimizer, x, "beta_vae", 1.0, i, gen)
    return step


def step_gflop(step, i: int) -> float:
    """FLOPs of one call ``step(i)`` (convolutions and matmuls, forward and backward), in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter:
            step(i)
    except Exception as exc:  # noqa: BLE001 - e.g. a compiled model the counter cannot trace
        print(f"# FLOPs not counted: {exc}", file=sys.stderr)
        return float("nan")
    return counter.get_total_flops() / 1e9


def child(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    sync = torch.cuda.synchronize if spec["device"] == "cuda" else (lambda: None)
    step = _stepper(spec)
    t0 = time.perf_counter()
    step(0)  # includes torch.compile's compilation in a compile row
    sync()
    first = time.perf_counter() - t0
    for i in range(1, WARMUP):
        step(i)
    sync()
    t1, c1, s1 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
    for i in range(WARMUP, WARMUP + spec["steps"]):
        step(i)
    sync()
    wall, cpu = time.perf_counter() - t1, time.process_time() - c1
    system = resource.getrusage(resource.RUSAGE_SELF).ru_stime - s1
    # after the timing, so that neither disturbs it
    from gemm import gemm_rate  # benchmarks/gemm.py (this script's folder is on sys.path)

    n = 8192 if spec["device"] == "cuda" else 2048
    gflop, rate = step_gflop(step, WARMUP + spec["steps"]), gemm_rate(n, n, torch.float32, spec["device"])
    return {"ms": 1000 * wall / spec["steps"], "cpu_wall": cpu / wall, "sys": system / cpu, "first_s": first,
            "gflop": gflop, "gemm": rate}


def architectures(names: list[str] | None) -> list[str]:
    """VAE architectures of the registry (those with ``decode``), or ``conv`` without a registry."""
    try:
        from vaetransfer.models import ARCHITECTURES
    except ImportError:
        ARCHITECTURES = {"conv": _arch_class("conv")}
    vaes = [name for name, cls in ARCHITECTURES.items() if hasattr(cls, "decode")]
    return [n for n in vaes if names is None or n in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per row (after 5 warm-up steps)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch threads, the same for every row")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the fastest is kept")
    parser.add_argument("--ablate", action="store_true", help="add a row per speed-up, cumulatively")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row")
    parser.add_argument("--arch", nargs="+", help="architectures (default: every VAE of the registry)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    import tempfile

    import torch

    rows = [("plain", None, None), *(ABLATION if args.ablate else []), OURS]
    rows += [COMPILED] if args.compile else []
    cpu = platform.processor() or platform.machine()
    print(f"# torch {torch.__version__}, {cpu}, {os.cpu_count()} CPUs, "
          f"device {args.device}, batch {BATCH}, {args.steps} timed steps, best of {args.repeats}; "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    best: dict[tuple, dict] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        for _ in range(args.repeats):
            for arch in architectures(args.arch):
                for threads in args.threads:
                    for label, keep, fast in rows:
                        spec = {"arch": arch, "threads": threads, "device": args.device,
                                "steps": args.steps, "plain": keep is None, "keep": keep, "fast": fast,
                                "tmpdir": tmpdir}
                        # a fresh inductor cache per row, so a compile row's first step is a cold compile
                        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(dir=tmpdir)}
                        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                             check=True, capture_output=True, text=True, env=env).stdout
                        result = json.loads(out.strip().splitlines()[-1])
                        key = (arch, threads, label)
                        if key not in best or result["ms"] < best[key]["ms"]:
                            best[key] = result
    print(f"{'arch':<6}{'threads':>8}  {'loop':<24}{'ms/step':>9}{'steps/s':>9}{'cpu/wall':>9}"
          f"{'sys/cpu':>8}{'1st step s':>11}{'speed-up':>9}{'GFLOP':>7}{'GEMM GF/s':>10}{'floor ms':>9}"
          f"{'2x target':>10}")
    for (arch, threads, label), r in best.items():
        base = best[(arch, threads, "plain")]["ms"]
        floor = 1000 * r["gflop"] / r["gemm"]
        print(f"{arch:<6}{threads:>8}  {label:<24}{r['ms']:>9.1f}{1000 / r['ms']:>9.2f}{r['cpu_wall']:>9.2f}"
              f"{r['sys']:>8.2f}{r['first_s']:>11.2f}{base / r['ms']:>8.2f}x{r['gflop']:>7.2f}{r['gemm']:>10.0f}"
              f"{floor:>9.1f}{base / 2:>10.1f}")
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
