"""Shard scoring and aggregation: activation files in, long-format similarity tables out.

Identities come from the activation sidecars (model dataset, objective, hyper-parameter, seed,
step, evaluation dataset), never from paths. Each snapshot of a shard is loaded and prepared once,
however many pairs it appears in (the per-representation work is cached for all its pairs).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from vaetransfer.activations import load_activations
from vaetransfer.layers import LAYER_NAMES
from vaetransfer.similarity import METRICS, pair_score, prepare

#: Activations with smaller magnitude are set to 0 before scoring (authors' prepare_activations).
ZERO_BELOW = 1e-7

#: Identity of one side of a comparison; columns `<field>_x` and `<field>_y` of the table.
IDENTITY_FIELDS = ("dataset", "objective", "hparam_name", "hparam", "seed", "step", "eval_dataset")

SCORE_COLUMNS = ["family", "layer_x", "layer_y", "metric", "score", "n_examples"]
TABLE_COLUMNS = [
    *(f"{f}_x" for f in IDENTITY_FIELDS),
    *(f"{f}_y" for f in IDENTITY_FIELDS),
    *SCORE_COLUMNS,
]


def identity(meta: dict) -> dict:
    """The `IDENTITY_FIELDS` of an activation sidecar."""
    model = meta["model"]
    out = {f: model[f] for f in IDENTITY_FIELDS if f != "eval_dataset"}
    out["eval_dataset"] = meta["eval_dataset"]
    return out


class _PreparedSnapshot:
    """Lazily prepared layers of one activation file (each layer prepared at most once)."""

    def __init__(self, path: str, metrics: Sequence[str]):
        self.arrays, self.meta = load_activations(path)
        self.metrics = metrics
        self._prepared: dict[str, object] = {}

    def layer(self, name: str):
        if name not in self._prepared:
            array = self.arrays[name].reshape(len(self.arrays[name]), -1)
            # The authors zero |x| < 1e-7 before scoring (reference.md §5.2, against NaNs with
            # near-collapsed units); done in place, in the stored dtype, to avoid a float64 copy.
            array[np.abs(array) < ZERO_BELOW] = 0
            self._prepared[name] = prepare(array, self.metrics)
        return self._prepared[name]

    @property
    def indices(self) -> list[int]:
        return list(self.meta["example_indices"])


def score_pairs(
    pairs: Iterable[tuple[str, str]], metrics: Sequence[str], family: str
) -> pd.DataFrame:
    """Score every layer pair of every snapshot pair; one row per (pair, layer_x, layer_y, metric).

    pairs: (activations_x.npz, activations_y.npz) paths. Both files of a pair must hold the
    same examples (the evaluation sample of one dataset), else the scores would be meaningless.
    """
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}; known: {sorted(METRICS)}")
    cache: dict[str, _PreparedSnapshot] = {}

    def snapshot(path: str) -> _PreparedSnapshot:
        if path not in cache:
            cache[path] = _PreparedSnapshot(path, metrics)
        return cache[path]

    rows = []
    for path_x, path_y in pairs:
        x, y = snapshot(str(path_x)), snapshot(str(path_y))
        if x.indices != y.indices:
            raise ValueError(f"{path_x} and {path_y} were computed on different examples")
        ids = {f"{k}_x": v for k, v in identity(x.meta).items()}
        ids.update({f"{k}_y": v for k, v in identity(y.meta).items()})
        n = len(x.indices)
        for lx in LAYER_NAMES:
            for ly in LAYER_NAMES:
                for m in metrics:
                    score = pair_score(x.layer(lx), y.layer(ly), m)
                    rows.append(
                        {**ids, "family": family, "layer_x": lx, "layer_y": ly,
                         "metric": m, "score": score, "n_examples": n}
                    )
    return as_table(pd.DataFrame(rows, columns=TABLE_COLUMNS))


def as_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Fix the column order and dtypes of a similarity table (schema checked, not assumed)."""
    missing = [c for c in TABLE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"similarity table lacks columns {missing}")
    frame = frame[TABLE_COLUMNS].copy()
    for side in ("x", "y"):
        frame[f"hparam_{side}"] = frame[f"hparam_{side}"].astype("float64")
        for col in ("seed", "step"):
            frame[f"{col}_{side}"] = frame[f"{col}_{side}"].astype("int64")
    frame["score"] = frame["score"].astype("float64")
    frame["n_examples"] = frame["n_examples"].astype("int64")
    return frame


def aggregate(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate shard tables into the one long-format table."""
    frames = list(frames)
    if not frames:
        return as_table(pd.DataFrame(columns=TABLE_COLUMNS))
    return as_table(pd.concat(frames, ignore_index=True))
