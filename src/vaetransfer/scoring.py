"""Shard scoring and aggregation: activation files in, long-format similarity tables out.

Identities come from the activation sidecars (model dataset, architecture, objective,
hyper-parameter, seed, step, evaluation dataset), never from paths; so do layer names (a conv
VAE has 16 representations, an FC VAE 11, the classifier 7). Each snapshot of a shard is loaded and prepared once
(:func:`vaetransfer.similarity.prepare`), however many pairs it appears in; the prepared
representations stay in memory up to `memory_mb` and are spilled to a temporary directory beyond
it, so a shard's peak memory does not grow with its number of snapshots.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from vaetransfer.activations import load_activations, sidecar_path
from vaetransfer.io import read_json
from vaetransfer.similarity import Prepared, check_metrics, constant_flags, pairwise, prepare, zero_small

#: Identity of one side of a comparison; columns `<field>_x` and `<field>_y` of the table.
IDENTITY_FIELDS = (
    "dataset", "architecture", "objective", "hparam_name", "hparam", "seed", "step", "eval_dataset",
    "source_dataset", "retrained",
)

SCORE_COLUMNS = [
    "family", "layer_x", "layer_y", "metric", "score", "n_examples",
    "constant_x", "constant_y", "debiased",
]
TABLE_COLUMNS = [
    *(f"{f}_x" for f in IDENTITY_FIELDS),
    *(f"{f}_y" for f in IDENTITY_FIELDS),
    *SCORE_COLUMNS,
]


def identity(meta: dict) -> dict:
    """The `IDENTITY_FIELDS` of an activation sidecar."""
    # Defaults for dumps written before architectures and transfer runs existed.
    model = {"architecture": "conv", "source_dataset": meta["model"]["dataset"], "retrained": "", **meta["model"]}
    out = {f: model[f] for f in IDENTITY_FIELDS if f != "eval_dataset"}
    out["eval_dataset"] = meta["eval_dataset"]
    return out


class _Store:
    """Prepared layers of each snapshot file, in memory up to a byte budget, spilled beyond it."""

    def __init__(self, metrics, device, debiased, memory_mb, scratch, stack: ExitStack):
        self.metrics, self.device, self.debiased = metrics, device, debiased
        self.budget = memory_mb * 2**20
        self.scratch, self.stack = scratch, stack
        self.spill_dir: str | None = None
        self.resident = 0
        self.snapshots: dict[str, list[Prepared]] = {}
        self.layers: dict[str, list[str]] = {}
        self.meta: dict[str, dict] = {}

    def load(self, path: str) -> list[Prepared]:
        if path not in self.snapshots:
            prepared = []
            layers = [entry["name"] for entry in read_json(sidecar_path(path))["layers"]]
            for name in layers:  # one layer in memory at a time (a snapshot is 2 GB at n = 5000)
                arrays, meta = load_activations(path, [name])
                array = arrays.pop(name)
                # The authors zero |x| < 1e-7 before scoring (reference.md §5.2, against NaNs with
                # near-collapsed units); in place, in the stored dtype: no float64 twin.
                rep = prepare(zero_small(array), self.metrics, device=self.device, debiased=self.debiased)
                prepared.append(self._keep(rep))
                del array
            self.snapshots[path], self.meta[path], self.layers[path] = prepared, meta, layers
        return self.snapshots[path]

    def _keep(self, rep: Prepared) -> Prepared:
        if self.resident + rep.nbytes() <= self.budget:
            self.resident += rep.nbytes()
            return rep
        if self.spill_dir is None:
            self.spill_dir = self.stack.enter_context(
                tempfile.TemporaryDirectory(prefix="vaetransfer-", dir=self.scratch)
            )
        return rep.spill(self.spill_dir)


def score_pairs(
    pairs: Iterable[tuple[str, str]],
    metrics: Sequence[str],
    family: str,
    *,
    device: str = "cpu",
    debiased: bool = False,
    constant: str = "defined",
    memory_mb: int = 2000,
    scratch: str | None = None,
) -> pd.DataFrame:
    """Score every layer pair of every snapshot pair; one row per (pair, layer_x, layer_y, metric).

    pairs: (activations_x.npz, activations_y.npz) paths. Both files of a pair must hold the same
    examples (the evaluation sample of one dataset), else the scores would be meaningless; this is
    checked from the sidecars before any heavy work. `constant_x`/`constant_y` flag collapsed
    (constant) representations, whose scores follow `constant` (see vaetransfer.similarity).
    """
    metrics = check_metrics(metrics)
    pairs = [(str(a), str(b)) for a, b in pairs]
    _check_same_examples(pairs)
    columns: dict[str, list] = {c: [] for c in TABLE_COLUMNS}
    with ExitStack() as stack:
        store = _Store(metrics, device, debiased, memory_mb, scratch, stack)
        for path_x, path_y in pairs:
            px, py = store.load(path_x), store.load(path_y)
            ids = {f"{k}_x": v for k, v in identity(store.meta[path_x]).items()}
            ids.update({f"{k}_y": v for k, v in identity(store.meta[path_y]).items()})
            cx, cy = constant_flags(px), constant_flags(py)
            for metric in metrics:
                scores = pairwise(px, px if path_x == path_y else py, metric, device=device,
                                  debiased=debiased, constant=constant)
                _append(columns, ids, family, metric, scores, (store.layers[path_x], store.layers[path_y]),
                        cx, cy, px[0].n_examples, debiased and metric == "cka")
    return as_table(pd.DataFrame(columns))


def _append(columns, ids, family, metric, scores, layers, cx, cy, n, debiased) -> None:
    """Add one snapshot pair's (len(layers_x), len(layers_y)) block of `metric` (layer_x outermost)."""
    names_x, names_y = layers
    size = len(names_x) * len(names_y)
    for key, value in ids.items():
        columns[key].extend([value] * size)
    columns["family"].extend([family] * size)
    columns["layer_x"].extend(np.repeat(names_x, len(names_y)))
    columns["layer_y"].extend(np.tile(names_y, len(names_x)))
    columns["metric"].extend([metric] * size)
    columns["score"].extend(scores.ravel())
    columns["n_examples"].extend([n] * size)
    columns["constant_x"].extend(np.repeat(cx, len(names_y)))
    columns["constant_y"].extend(np.tile(cy, len(names_x)))
    columns["debiased"].extend([debiased] * size)


def _check_same_examples(pairs: list[tuple[str, str]]) -> None:
    indices: dict[str, list[int]] = {}
    for path in {p for pair in pairs for p in pair}:
        indices[path] = list(read_json(sidecar_path(path))["example_indices"])
    for a, b in pairs:
        if indices[a] != indices[b]:
            raise ValueError(f"{a} and {b} were computed on different examples")


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
        frame[f"constant_{side}"] = frame[f"constant_{side}"].astype("bool")
    frame["debiased"] = frame["debiased"].astype("bool")
    frame["score"] = frame["score"].astype("float64")
    frame["n_examples"] = frame["n_examples"].astype("int64")
    return frame


def aggregate(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate shard tables into the one long-format table (idempotent: the same shards always
    give the same table; a pair scored twice is an error, not a silent double count)."""
    frames = list(frames)
    if not frames:
        return as_table(pd.DataFrame(columns=TABLE_COLUMNS))
    table = as_table(pd.concat(frames, ignore_index=True))
    keys = [c for c in TABLE_COLUMNS if c not in ("score", "n_examples", "constant_x", "constant_y")]
    duplicated = table.duplicated(keys)
    if duplicated.any():
        first = table[duplicated].iloc[0]
        raise ValueError(f"the same comparison appears in several shards, e.g. {first[keys].to_dict()}")
    return table
