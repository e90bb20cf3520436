"""Resumable training: a job killed by SLURM (time limit, preemption, `scancel`) carries on from
its last saved state on the next attempt instead of starting over.

A run's resume directory holds `state.pt` (weights, Adam state, step, noise-generator state and the
loss log so far) and a hard link to every checkpoint already written: Snakemake deletes the
declared outputs of a failed job, so the links are what lets a resumed run hand back the early
checkpoints without recomputing them. The state is written every `save_every` steps and when
SIGTERM/SIGINT/SIGUSR1 arrives (SLURM sends SIGTERM before killing a job); the directory is
removed once the run has finished, so a forced re-run starts from scratch.

Every file here (and every checkpoint put back) is written under a temporary name and renamed
(:func:`vaetransfer.io.atomic_path`), so a job killed mid-write, even by SIGKILL, leaves at most a
stray ``.<name>.*.tmp*`` file, which is never read; a state that cannot be read is ignored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from vaetransfer.io import atomic_path

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopRequested(RuntimeError):
    """Training stopped on a signal after saving its state; the next attempt resumes."""


@contextlib.contextmanager
def stop_on_signals(signals=STOP_SIGNALS) -> Iterator[Callable[[], int | None]]:
    """Turn `signals` into a flag polled between steps (a step is never cut in half).

    Yields a function returning the number of the signal received, or None. The previous
    handlers are restored on exit. Outside the main thread (no handlers allowed) it never stops.
    """
    received: list[int] = []
    previous = {}
    try:
        for sig in signals:
            previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
    except ValueError:  # not the main thread
        pass
    try:
        yield lambda: received[0] if received else None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class ResumeDir:
    """The resume state of one training run, in directory `path`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.state_file = self.path / "state.pt"

    def save(self, step: int, config: Mapping[str, Any], model, optimizer,
             noise_generator: torch.Generator, loss_rows: Mapping[str, Any]) -> None:
        payload = {
            "step": int(step),
            "config": dict(config),
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "noise_generator": noise_generator.get_state(),
            "loss_rows": dict(loss_rows),
        }
        with atomic_path(self.state_file) as tmp:
            torch.save(payload, tmp)
        log.info("saved resume state at step %d to %s", step, self.state_file)

    def load(self, config: Mapping[str, Any]) -> dict | None:
        """The saved state, or None if there is none, it is unreadable or it belongs to another config."""
        if not self.state_file.exists():
            return None
        try:
            state = torch.load(self.state_file, map_location="cpu", weights_only=False)
        except Exception as exc:  # e.g. truncated by a crash of the node before it reached the disk
            log.warning("ignoring %s: unreadable (%s); starting over", self.state_file, exc)
            return None
        if not isinstance(state, dict) or not _STATE_KEYS <= set(state):
            log.warning("ignoring %s: not a resume state; starting over", self.state_file)
            return None
        if state.get("config") != dict(config):
            log.warning("ignoring %s: it was saved for a different config", self.state_file)
            return None
        log.info("resuming from step %d (%s)", state["step"], self.state_file)
        return state

    def keep_checkpoint(self, checkpoint: str | os.PathLike) -> None:
        """Hard-link (or copy, across file systems) a written checkpoint into the resume dir."""
        checkpoint = Path(checkpoint)
        kept = self.path / checkpoint.name
        self.path.mkdir(parents=True, exist_ok=True)
        kept.unlink(missing_ok=True)
        try:
            os.link(checkpoint, kept)  # atomic: the link appears with the whole file
        except OSError:
            _copy_atomic(checkpoint, kept)

    def restore_checkpoints(self, checkpoint_paths: Mapping[int, str | os.PathLike], upto: int) -> None:
        """Put back the checkpoints of steps <= `upto` that a failed attempt's cleanup deleted."""
        for step, path in checkpoint_paths.items():
            kept = self.path / Path(path).name
            if step <= upto and not Path(path).exists():
                if not kept.exists():
                    raise FileNotFoundError(f"{kept}: needed to resume, but missing; delete {self.path} to restart")
                _copy_atomic(kept, path)

    def clear(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


_STATE_KEYS = {"step", "config", "state_dict", "optimizer", "noise_generator", "loss_rows"}


def _copy_atomic(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy a file (with its metadata) so that `target` never exists half-written."""
    with atomic_path(target) as tmp:
        shutil.copy2(source, tmp)
