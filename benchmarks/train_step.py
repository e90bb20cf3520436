"""Time CPU training steps of the conv VAE (batch 64, 64x64x1) and print a table.

Usage: python benchmarks/train_step.py [--steps N]
Each configuration runs in a fresh subprocess (thread count and allocator settings are
process-wide): torch threads 1 or 2, with or without `keep_freed_memory()`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = r"""
import sys, time, numpy as np, torch
from vaetransfer import runtime
from vaetransfer.models import ConvVAE, images_to_tensor
from vaetransfer.train import train_step
threads, keep, steps = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
torch.set_num_threads(threads)
if keep:
    runtime.keep_freed_memory()
rng = np.random.default_rng(0)
images = (rng.random((2048, 64, 64, 1)) < 0.2).astype(np.uint8) * 255
model = ConvVAE(channels=1)
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
gen = torch.Generator().manual_seed(0)
def step(i):
    idx = np.sort(rng.choice(len(images), 64, replace=False))
    train_step(model, opt, images_to_tensor(images[idx], "cpu"), "beta_vae", 1.0, i, gen)
for i in range(5):
    step(i)
t0, c0 = time.perf_counter(), time.process_time()
for i in range(steps):
    step(i)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(f"{1000 * wall / steps:.1f} {cpu / wall:.2f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    print(f"{'threads':>8}{'keep_freed_memory':>19}{'ms/step':>10}{'cpu/wall':>10}")
    for threads in (1, 2):
        for keep in (False, True):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(threads), str(int(keep)), str(args.steps)],
                check=True, capture_output=True, text=True,
            ).stdout.split()
            print(f"{threads:>8}{str(keep):>19}{out[0]:>10}{out[1]:>10}")


if __name__ == "__main__":
    main()
