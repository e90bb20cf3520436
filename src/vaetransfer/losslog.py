"""The per-step loss log of a training run, and its NaN/inf check (used by vaetransfer.train).

Logged terms stay on the device (0-d tensors) and are moved to the host in blocks, where they are
checked: a NaN or infinite term raises :class:`NonFiniteLoss` naming the first bad step and term.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from vaetransfer.io import write_parquet
from vaetransfer.objectives import logged_terms


class NonFiniteLoss(RuntimeError):
    """A logged term was NaN or infinite. ``step``: the first such step; ``terms``: its values."""

    def __init__(self, step: int, terms: Mapping[str, float], shown: tuple[str, ...]) -> None:
        self.step, self.terms = step, dict(terms)
        bad = [name for name, value in self.terms.items() if not math.isfinite(value)]
        good = [name for name in shown if name not in bad]
        super().__init__(
            f"non-finite loss at step {step}: {_format_terms(self.terms, bad)} "
            f"({_format_terms(self.terms, good)}); no checkpoint or resume state at or after "
            f"step {step} was written"
        )


def _format_terms(terms: Mapping[str, float], names: list[str]) -> str:
    return ", ".join(f"{name} = {terms[name]:.5g}" for name in names)


def kl_columns(latent_dim: int) -> tuple[str, ...]:
    """``kl_0 … kl_{d-1}``: the per-dimension KL columns of the loss log."""
    return tuple(f"kl_{i}" for i in range(latent_dim))


def log_columns(objective: str, latent_dim: int) -> tuple[str, ...]:
    """The columns of a run's loss log, in order (``step`` first)."""
    return ("step", *logged_terms(objective), *kl_columns(latent_dim))


def kl_per_dimension(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Batch-mean KL(N(μ_i, σ_i²) || N(0, 1)) of each latent dimension i: (N, d) -> (d,).

    The summands of :func:`vaetransfer.objectives.gaussian_kl`; a dimension whose KL stays near 0
    carries no information (posterior collapse).
    """
    with torch.no_grad():
        return (0.5 * (mean.square() + log_var.exp() - log_var - 1.0)).mean(dim=0)


class LossLog:
    """Per-step terms kept on the device; moved to host (and checked) in blocks, written on flush.

    ``shown``: the terms a :class:`NonFiniteLoss` message lists besides the bad ones.
    """

    def __init__(self, path: str | Path, columns: tuple[str, ...], shown: tuple[str, ...]) -> None:
        self.path = Path(path)
        self.columns = columns  # the logged terms, without "step"
        self.shown = shown
        self.steps: list[int] = []
        self.pending: list[torch.Tensor] = []
        self.done: list[np.ndarray] = []
        self.rows_written: int | None = None  # rows in the file on disk (None: not written yet)

    def append(self, step: int, terms: dict[str, torch.Tensor]) -> None:
        self.steps.append(step)
        self.pending.append(torch.stack([terms[c] for c in self.columns]))

    def rows(self) -> dict[str, Any]:
        """Everything logged so far, on the host and checked (for a resume state)."""
        self.to_host()
        return {"columns": self.columns, "steps": list(self.steps), "values": list(self.done)}

    def restore(self, rows: Mapping[str, Any]) -> None:
        self.steps, self.done, self.pending = list(rows["steps"]), list(rows["values"]), []

    def to_host(self) -> None:
        """Move the pending terms to the host (one device sync); raise NonFiniteLoss on NaN/inf."""
        if not self.pending:
            return
        block = torch.stack(self.pending).double().cpu().numpy()
        first = len(self.steps) - len(self.pending)
        self.pending = []
        bad_rows = ~np.isfinite(block).all(axis=1)
        if bad_rows.any():
            row = int(np.argmax(bad_rows))
            raise NonFiniteLoss(self.steps[first + row], dict(zip(self.columns, block[row].tolist())), self.shown)
        self.done.append(block)

    def last(self, column: str) -> float:
        """The latest host-side value of ``column`` (call :meth:`to_host` first)."""
        return float(self.done[-1][-1, self.columns.index(column)])

    def flush(self) -> None:
        if self.rows_written == len(self.steps):
            return  # the final flush after a last-step checkpoint has nothing new
        self.to_host()
        values = np.concatenate(self.done) if self.done else np.empty((0, len(self.columns)))
        frame = pd.DataFrame(values, columns=list(self.columns))
        frame.insert(0, "step", np.asarray(self.steps, dtype=np.int64))
        write_parquet(self.path, frame)
        self.rows_written = len(self.steps)


