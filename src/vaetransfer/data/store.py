"""The on-disk dataset format shared by every generator, downloader and consumer.

A dataset is a directory holding three files:

- ``images.npy``: uint8 (N, 64, 64, C), intensities 0..255 (C = 1 or 3), memory-mappable, so
  training and evaluation read samples without loading 3 GB (full dSprites) into memory;
- ``factors.parquet``: one column per factor / label, N rows, in image order;
- ``meta.json``: ``name``, ``n``, ``channels``, ``height``, ``width``, ``pixel_max`` (255),
  ``factors`` {name: {"size": int, "values": list | None, ...}}, ``source``, ``version`` and any
  generator-specific keys (e.g. ``params``).

``meta.json`` is written last, so its presence marks a complete dataset; loaders refuse a
directory without it. Index helpers (evaluation subsets, train/validation splits) live here too
because they are defined on a dataset's length.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from vaetransfer.io import atomic_path, read_json, save_npy, write_json, write_parquet

IMAGES_FILE = "images.npy"
FACTORS_FILE = "factors.parquet"
META_FILE = "meta.json"
IMAGE_SIZE = 64
PIXEL_MAX = 255


def _validate(images: np.ndarray, factors: pd.DataFrame, meta: dict) -> None:
    """Raise ValueError/TypeError describing the first inconsistency; writes nothing."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise ValueError(
            f"images must be a uint8 numpy array, got dtype {getattr(images, 'dtype', type(images))}"
        )
    if images.ndim != 4 or images.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE) or images.shape[3] not in (1, 3):
        raise ValueError(f"images must have shape (N, 64, 64, C) with C in (1, 3), got {images.shape}")
    if not isinstance(factors, pd.DataFrame):
        raise TypeError(f"factors must be a pandas DataFrame, got {type(factors).__name__}")
    if len(factors) != len(images):
        raise ValueError(f"factors has {len(factors)} rows but there are {len(images)} images")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ValueError("meta must be a dict with a non-empty string 'name'")
    spec = meta.get("factors")
    if not isinstance(spec, dict):
        raise ValueError("meta['factors'] must be a dict {factor: {'size': int, 'values': list | None}}")
    columns = [str(c) for c in factors.columns]
    if len(set(columns)) != len(columns) or set(columns) != set(spec):
        raise ValueError(f"factor columns {columns} do not match meta['factors'] keys {list(spec)}")
    for name, entry in spec.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or entry["size"] < 0:
            raise ValueError(f"meta['factors'][{name!r}] needs an int 'size' >= 0, got {entry!r}")
        if entry.get("values") is not None and not isinstance(entry["values"], list):
            raise ValueError(f"meta['factors'][{name!r}]['values'] must be a list or None")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta is not JSON-serialisable: {err}") from None


def write_dataset(out_dir: str | os.PathLike, images: np.ndarray, factors: pd.DataFrame, meta: dict) -> None:
    """Validate, then write `images` (uint8 N×64×64×C), `factors` (N rows, one column per key of
    ``meta["factors"]``) and `meta` into `out_dir`.

    ``n``, ``channels``, ``height``, ``width`` and ``pixel_max`` are filled in from `images`;
    ``source`` defaults to "unspecified" and ``version`` to 1. All three files are staged as
    temporaries first and only renamed into place once every one was written, images and
    factors before ``meta.json``; an old ``meta.json`` is removed just before the renames so a
    crash between them leaves a directory marked incomplete. A bad input or failed write leaves
    an existing dataset untouched and no temporaries behind.
    """
    _validate(images, factors, meta)
    out_dir = Path(out_dir)
    full_meta = {
        **meta,
        "n": int(images.shape[0]),
        "channels": int(images.shape[3]),
        "height": int(images.shape[1]),
        "width": int(images.shape[2]),
        "pixel_max": PIXEL_MAX,
    }
    full_meta.setdefault("source", "unspecified")
    full_meta.setdefault("version", 1)
    # Column order follows meta["factors"]; a fresh RangeIndex keeps the parquet file plain.
    frame = factors.rename(columns=str)[list(meta["factors"])].reset_index(drop=True)
    created = not out_dir.exists()
    try:
        # Exits run innermost first: images, then factors, then meta.json are renamed.
        with (
            atomic_path(out_dir / META_FILE) as tmp_meta,
            atomic_path(out_dir / FACTORS_FILE) as tmp_factors,
            atomic_path(out_dir / IMAGES_FILE) as tmp_images,
        ):
            save_npy(tmp_images, images)
            write_parquet(tmp_factors, frame)
            write_json(tmp_meta, full_meta)
            (out_dir / META_FILE).unlink(missing_ok=True)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise


def _existing(dataset_dir: str | os.PathLike, filename: str) -> Path:
    """Path of `filename` in a *complete* dataset (meta.json present), else FileNotFoundError."""
    dataset_dir = Path(dataset_dir)
    for path in (dataset_dir / META_FILE, dataset_dir / filename):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (missing or incompletely written dataset)")
    return dataset_dir / filename


def load_images(dataset_dir: str | os.PathLike, mmap: bool = True) -> np.ndarray:
    """uint8 (N, 64, 64, C) images; a read-only memory map unless ``mmap=False``."""
    return np.load(_existing(dataset_dir, IMAGES_FILE), mmap_mode="r" if mmap else None)


def load_factors(dataset_dir: str | os.PathLike) -> pd.DataFrame:
    """The factors table, one row per image, one column per factor / label."""
    return pd.read_parquet(_existing(dataset_dir, FACTORS_FILE), engine="pyarrow")


def load_meta(dataset_dir: str | os.PathLike) -> dict:
    """The dataset's meta.json as a dict."""
    return read_json(_existing(dataset_dir, META_FILE))


def _check_total(n_total: int) -> None:
    if isinstance(n_total, bool) or not isinstance(n_total, (int, np.integer)) or n_total <= 0:
        raise ValueError(f"n_total must be a positive int, got {n_total!r}")


def evaluation_indices(n_total: int, n: int, seed: int) -> np.ndarray:
    """Sorted unique int64 indices: a random subset of size ``min(n, n_total)`` of range(n_total),
    drawn without replacement with ``np.random.default_rng(seed)``. Sorted so that reading
    a memory-mapped dataset walks the file forwards."""
    _check_total(n_total)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rng = np.random.default_rng(seed)
    picked = rng.choice(int(n_total), size=min(int(n), int(n_total)), replace=False)
    return np.sort(picked).astype(np.int64)


def split_indices(n_total: int, seed: int, validation_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) int64 index arrays: disjoint, together covering range(n_total).

    Validation has ``ceil(validation_fraction · n_total)`` indices drawn without replacement
    from *all* n_total with ``np.random.default_rng(seed)`` and returned sorted; train is the
    rest, shuffled once with the same generator (spec reference.md §3.3). The authors drew from
    range(N − 1), so index N − 1 could never be validation; that off-by-one is fixed here.
    """
    _check_total(n_total)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must lie in (0, 1), got {validation_fraction!r}")
    # The tolerance stops float noise from rounding up, e.g. 0.1 * 30 = 3.0000000000000004.
    n_val = max(1, math.ceil(validation_fraction * n_total - 1e-9))
    if n_val >= n_total:
        raise ValueError(
            f"n_total={n_total} leaves no training data at validation_fraction={validation_fraction}"
        )
    rng = np.random.default_rng(seed)
    validation = np.sort(rng.choice(int(n_total), size=n_val, replace=False)).astype(np.int64)
    in_val = np.zeros(int(n_total), dtype=bool)
    in_val[validation] = True
    train = np.flatnonzero(~in_val).astype(np.int64)
    rng.shuffle(train)
    return train, validation
