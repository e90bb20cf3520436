"""Time stacked multi-seed training (vaetransfer.stacked) against K separate train_step loops.

Usage: python benchmarks/stacked.py [--device cpu|cuda] [--steps N] [--ks 1 2 4] [--modes vmap loop]
       [--threads T] [--repeats R] [--architecture conv|fc] [--objective beta_vae]

For each K: K conv VAEs (seeds 0..K-1, batch 64, 64x64x1, Adam) trained for --steps steps after a
warm-up, (a) as K separate models, one train_step each per round (what K `train` jobs in one process
would do), and (b) stacked, in each of --modes. Data loading (indexing a host uint8 array, the copy to
the device) is timed too, as in training. Printed per row: ms per model-step (wall time / (K steps)),
model-steps/s, and what 300k steps per model cost at that rate, amortised over the K models; each
row is the fastest of --repeats interleaved repeats.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vaetransfer.models import images_to_tensor
from vaetransfer.stacked import StackedModels, new_model
from vaetransfer.train import TrainConfig, _generators, epoch_batches, train_step

WARMUP = 5


def configs(k: int, args) -> list[TrainConfig]:
    extra = {"architecture": args.architecture} if args.architecture != "conv" else {}
    return [TrainConfig(dataset="bench", objective=args.objective, hparam=1.0, seed=s, steps=1,
                        checkpoint_steps=[1], batch_size=args.batch_size, device=args.device, **extra)
            for s in range(k)]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_separate(cfgs, images, args) -> float:
    members = []
    for cfg in cfgs:
        init_gen, noise_gen = _generators(cfg)
        model = new_model(cfg)
        model.reset_parameters(generator=init_gen)
        model.to(cfg.device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        batches = epoch_batches(np.arange(len(images)), cfg.batch_size, np.random.default_rng(cfg.seed))
        members.append((model, optimizer, noise_gen, batches))
    for i in range(WARMUP + args.steps):
        if i == WARMUP:
            sync(args.device)
            start = time.perf_counter()
        for (model, optimizer, noise_gen, batches), cfg in zip(members, cfgs):
            x = images_to_tensor(images[next(batches)], cfg.device)
            train_step(model, optimizer, x, cfg.objective, cfg.hparam, i, noise_gen, cfg.objective_options)
    sync(args.device)
    return time.perf_counter() - start


def time_stacked(cfgs, images, args, mode: str) -> float:
    stack = StackedModels(cfgs, mode=mode)
    streams = [epoch_batches(np.arange(len(images)), c.batch_size, np.random.default_rng(c.seed)) for c in cfgs]
    for i in range(WARMUP + args.steps):
        if i == WARMUP:
            sync(args.device)
            start = time.perf_counter()
        x, x_dim = stack.inputs([images[next(s)] for s in streams])
        stack.step(x, x_dim, i)
    sync(args.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--modes", nargs="+", choices=("vmap", "loop"), default=["vmap", "loop"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--architecture", default="conv")
    parser.add_argument("--objective", default="beta_vae")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the fastest is kept")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = ((rng.random((4096, 64, 64, 1)) < 0.2) * 255).astype(np.uint8)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"# {device}, torch {torch.__version__}, {args.architecture} {args.objective}, batch {args.batch_size}, "
          f"{args.steps} timed steps after {WARMUP} warm-up, best of {args.repeats}")
    print(f"{'K':>3} {'how':>14} {'ms/model-step':>14} {'model-steps/s':>14} {'300k steps/model':>17} {'speed-up':>9}")
    for k in args.ks:
        cfgs = configs(k, args)
        runs = {"separate": lambda: time_separate(cfgs, images, args)}
        runs.update({f"stacked {m}": (lambda m=m: time_stacked(cfgs, images, args, m)) for m in args.modes})
        best = {how: float("inf") for how in runs}
        for _ in range(args.repeats):  # interleaved, so load changes on a shared machine hit every row
            for how, run in runs.items():
                best[how] = min(best[how], run())
        base = best["separate"]
        for how, wall in best.items():
            per = wall / (k * args.steps)
            print(f"{k:>3} {how:>14} {1000 * per:>14.2f} {1 / per:>14.1f} {300_000 * per / 60:>13.1f} min "
                  f"{base / wall:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
