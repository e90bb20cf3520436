"""Record the named representations of a trained model on a fixed set of images (spec reference.md §1.4).

The 16 of a conv VAE, 11 of an FC VAE, 7 of the classifier (``model.LAYERS``,
:mod:`vaetransfer.layers`).

An activation dump is two files written atomically, the sidecar last (so a sidecar implies a
complete npz; aesthetics.md §8.10):

- ``<name>.npz``: uncompressed; one float32 (n, p) array per layer name (the model's layer order),
  plus ``example_indices`` (int64, n) when the caller supplies them;
- ``<name>.json``: the caller's meta (``model``, ``eval_dataset``, ``example_indices``, ...)
  plus ``layers`` ([{"name", "shape"}], the model's layer order), ``dtype`` and ``n_examples``.

Activations are flattened in PyTorch's NCHW order (Keras flattens NHWC): a fixed permutation of
features, to which CKA and Procrustes are invariant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from vaetransfer.io import read_json, save_npz, write_json
from vaetransfer.layers import all_layer_names
from vaetransfer.models import NamedLayers, images_to_tensor

SIDECAR_FORMAT_VERSION = 1


def compute_activations(
    model: NamedLayers,
    images: np.ndarray,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """All ``model.LAYERS`` activations of ``model`` on uint8 ``images`` (n, 64, 64, C).

    Returns ``{name: float32 (n, p)}`` in ``model.LAYERS`` order ("input" is the [0, 1] image the
    model sees). Runs under ``torch.no_grad`` with the model moved to ``device`` and put in eval
    mode. The decoder runs on the sampled z (as the authors did); its noise comes from a
    generator seeded with ``seed``, so the dump is reproducible for a given (seed, batch_size,
    device).
    """
    if batch_size < 1 or len(images) == 0:
        raise ValueError(f"need batch_size >= 1 and images, got {batch_size} and {len(images)} images")
    model.to(device).eval()
    generator = torch.Generator(device=device).manual_seed(int(seed))
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            stop = min(start + batch_size, len(images))
            x = images_to_tensor(np.asarray(images[start:stop]), device)
            for name, act in model.activations(x, generator=generator).items():
                flat = act.reshape(stop - start, -1).to(torch.float32).cpu().numpy()
                if name not in out:  # allocate once the width is known: no concatenate copies
                    out[name] = np.empty((len(images), flat.shape[1]), dtype=np.float32)
                out[name][start:stop] = flat
    return {name: out[name] for name in model.LAYERS}


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of an activation file: same name, ``.json`` suffix."""
    return Path(path).with_suffix(".json")


def _jsonable(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays and tuples into JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _ordered_layers(arrays: Mapping[str, np.ndarray]) -> list[str]:
    """The names of ``arrays`` in their given order (the model's), all known layer names."""
    valid = all_layer_names()
    unknown = sorted(set(arrays) - set(valid))
    if unknown:
        raise ValueError(f"unknown layer name(s) {unknown}; valid: {list(valid)}")
    return list(arrays)


def _build_sidecar(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``arrays`` and return the sidecar dict (meta + layers, dtype, n_examples)."""
    names = _ordered_layers(arrays)
    if not names:
        raise ValueError("no activations to save")
    n_rows = {arrays[n].shape[0] for n in names}
    dtypes = {str(arrays[n].dtype) for n in names}
    if len(n_rows) != 1 or len(dtypes) != 1 or any(arrays[n].ndim != 2 for n in names):
        raise ValueError(f"activations must be 2-D with one n and one dtype, got n={n_rows} dtype={dtypes}")
    (n,) = n_rows
    indices = meta.get("example_indices")
    if indices is not None and len(indices) != n:
        raise ValueError(f"meta example_indices has {len(indices)} entries for {n} examples")
    reserved = {"layers", "dtype", "n_examples"} & set(meta)
    if reserved:
        raise ValueError(f"meta may not set {sorted(reserved)}: they are derived from the arrays")
    sidecar = _jsonable(dict(meta))
    sidecar.update(
        layers=[{"name": name, "shape": list(arrays[name].shape)} for name in names],
        dtype=dtypes.pop(),
        n_examples=n,
        format_version=SIDECAR_FORMAT_VERSION,
    )
    return sidecar


def save_activations(path: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    """Write ``arrays`` to ``path`` (.npz) and the sidecar ``path.with_suffix('.json')``.

    ``arrays``: {layer name: (n, p)}, names from :mod:`vaetransfer.layers` (stored in the given order). ``meta``
    (JSON-able, numpy scalars allowed) typically holds ``model`` (dataset, objective,
    hparam_name, hparam, seed, step), ``eval_dataset`` and ``example_indices``. Everything is
    validated and serialised before the first byte is written, so a bad input leaves no file.
    """
    path = Path(path)
    sidecar = _build_sidecar(arrays, meta)
    json.dumps(sidecar)  # fail now (TypeError) rather than after the npz is in place
    payload = {name: np.asarray(arrays[name]) for name in _ordered_layers(arrays)}
    if meta.get("example_indices") is not None:
        payload["example_indices"] = np.asarray(meta["example_indices"], dtype=np.int64)
    save_npz(path, payload)
    write_json(sidecar_path(path), sidecar)


def load_activations(
    path: str | Path, layers: Sequence[str] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read an activation dump: ``({layer: (n, p) array}, sidecar meta)``.

    ``layers`` selects a subset (default: every layer in the file); the result always follows
    the file's (the model's) layer order. A requested layer absent from the file, or not a layer name, raises
    KeyError naming the file and the layer.
    """
    path = Path(path)
    meta = read_json(sidecar_path(path))
    stored = [entry["name"] for entry in meta["layers"]]
    wanted = stored if layers is None else list(layers)
    for name in wanted:
        if name not in stored:
            raise KeyError(f"{path}: no layer {name!r}; stored layers: {stored}")
    ordered = [name for name in stored if name in set(wanted)]
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in ordered}
    return arrays, meta
