"""Process-level helpers for the workflow's scripts: log redirection and device choice."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def log_to(path: str | os.PathLike | None) -> Iterator[None]:
    """Send stdout, stderr (tqdm bars, warnings, tracebacks) and `logging` to `path`.

    Snakemake's `log:` directive only names the file; the script has to write to it. The
    traceback of a failing job is written too, so `--show-failed-logs` shows why it failed.
    """
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as fh:
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = fh
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc(file=fh)
            raise
        finally:
            root.removeHandler(handler)
            sys.stdout, sys.stderr = old


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when a CUDA device is visible, else 'cpu'; 'cuda' without one is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    return name


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS.

    Each training step allocates and frees the same multi-MB activation and gradient buffers; with
    glibc's defaults every large buffer is a fresh mmap, so each step pays page faults (measured:
    sys time 30 % of a CPU training step, ~1.4x slower steps; benchmarks/README.md). Raising the
    mmap and trim thresholds (what MALLOC_MMAP_THRESHOLD_ etc. do from the environment) keeps
    the buffers in the heap. Returns False where this is not glibc (no effect, nothing breaks).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = mallopt(m_mmap_threshold, 32 << 20)  # glibc's maximum (HEAP_MAX_SIZE / 2)
    ok &= mallopt(m_trim_threshold, 1 << 30)
    ok &= mallopt(m_top_pad, 256 << 20)
    return bool(ok)
