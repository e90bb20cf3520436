"""The real dSprites (spec datasets.md §1, §9; reference.md §4): the DeepMind NPZ into the store.

The NPZ (loaded with ``encoding="latin1", allow_pickle=True``: it was pickled under Python 2)
holds ``imgs`` (N, 64, 64) uint8 in {0, 1}, ``latents_values`` (N, 6) float64,
``latents_classes`` (N, 6) int64 and ``metadata`` (a pickled dict with ``latents_names`` =
(color, shape, scale, orientation, posX, posY) and ``latents_sizes`` = [1, 3, 6, 40, 32, 32]).

Preprocessing is the authors' and disentanglement_lib's: no resize, the colour factor dropped,
rows kept in file order (the canonical order, pos_y fastest). Pixels {0, 1} are stored as
{0, 255} (the store's 0..255 convention; loaders divide by 255). The result is interchangeable
with procedural dSprites (:mod:`vaetransfer.data.procedural`): same factor columns (shape,
scale, orientation, pos_x, pos_y) holding class indices into the full grid, same value lists
and the same ``meta['factors']`` layout (``size``, ``values``, ``indices``, shape ``names``).

``imgs`` (3 GB uncompressed) is streamed chunk by chunk from the zip member into a memory-mapped
uint8 array in ``scratch``; it is never loaded whole.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from vaetransfer.data.download import Resource
from vaetransfer.data.procedural import DSPRITES_FACTORS, dsprites_meta
from vaetransfer.data.store import write_dataset
from vaetransfer.data.real._stream import read_exactly

FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"

RESOURCES = (
    Resource(
        dataset="dsprites",
        filename=FILENAME,
        url=f"https://github.com/deepmind/dsprites-dataset/raw/master/{FILENAME}",
        # No md5/sha256 is published for the NPZ; its git blob id in deepmind/dsprites-dataset is
        # (spec §1 "Size and checksums"). Size ≈ 26 MB is unverified, so it is left out.
        checksum="gitblob:d98996d3f8ee1550e06b9d4ed78d0beb478910d5",
        size=None,
        licence=(
            "dSprites: Apache-2.0 (deepmind/dsprites-dataset LICENSE); the images were rendered "
            "with the LÖVE framework (zlib/libpng licence). Cite Matthey et al. 2017."
        ),
    ),
)

LATENTS_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
LATENTS_SIZES = (1, 3, 6, 40, 32, 32)
#: store factor name -> column of latents_classes / latents_values
FACTOR_COLUMNS = {"shape": 1, "scale": 2, "orientation": 3, "pos_x": 4, "pos_y": 5}
IMAGE_SIZE = 64
CHUNK = 8192  # images per streamed chunk (32 MiB)


def _fail(path: Path, message: str) -> ValueError:
    return ValueError(f"dSprites file {path}: {message}")


def _read_exact(stream, nbytes: int, path: Path) -> bytes:
    try:
        return read_exactly(stream, nbytes, "'imgs' member")
    except ValueError as err:
        raise _fail(path, str(err)) from None


def _check_metadata(data, path: Path) -> dict:
    try:
        metadata = data["metadata"][()]
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a malformed file
        raise _fail(path, f"cannot read the pickled 'metadata' ({type(err).__name__}: {err})") from None
    if not isinstance(metadata, dict):
        raise _fail(path, f"'metadata' must be a pickled dict, got {type(metadata).__name__}")
    names = tuple(str(n) for n in metadata.get("latents_names", ()))
    sizes = tuple(int(s) for s in np.asarray(metadata.get("latents_sizes", ())).ravel())
    if names != LATENTS_NAMES or sizes != LATENTS_SIZES:
        raise _fail(path, f"metadata latents_names/latents_sizes are {names}/{sizes}, "
                          f"expected {LATENTS_NAMES}/{LATENTS_SIZES}")
    return metadata


def _check_latents(classes: np.ndarray, values: np.ndarray, n: int, path: Path) -> None:
    for key, arr in (("latents_classes", classes), ("latents_values", values)):
        if arr.shape != (n, 6):
            raise _fail(path, f"'{key}' has shape {arr.shape}, expected ({n}, 6)")
    if not np.issubdtype(classes.dtype, np.integer):
        raise _fail(path, f"'latents_classes' must be integers, got {classes.dtype}")
    bad = (classes < 0) | (classes >= np.asarray(LATENTS_SIZES))
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        raise _fail(path, f"latents_classes[{row}, {col}] = {classes[row, col]} is outside "
                          f"[0, {LATENTS_SIZES[col]}) ({LATENTS_NAMES[col]})")
    # The values must be the grid values of the classes (shape values are 1, 2, 3).
    for name, col in FACTOR_COLUMNS.items():
        expected = DSPRITES_FACTORS[name][classes[:, col]] + (1 if name == "shape" else 0)
        if not np.allclose(values[:, col], expected, rtol=0, atol=1e-6):
            row = int(np.flatnonzero(~np.isclose(values[:, col], expected, rtol=0, atol=1e-6))[0])
            raise _fail(path, f"latents_values[{row}, {col}] = {values[row, col]} does not match "
                              f"its class {classes[row, col]} ({LATENTS_NAMES[col]} value {expected[row]})")


def _stream_images(path: Path, n: int, out: np.ndarray) -> None:
    """Copy ``imgs`` from the NPZ's zip member into `out` (N, 64, 64, 1), {0,1} -> {0,255}."""
    with zipfile.ZipFile(path) as zf, zf.open("imgs.npy") as stream:
        version = np.lib.format.read_magic(stream)
        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise _fail(path, f"'imgs' has unsupported .npy format version {version}")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, message=".*Python 2.*")
            shape, fortran, dtype = reader(stream)
        if shape != (n, IMAGE_SIZE, IMAGE_SIZE) or dtype != np.uint8 or fortran:
            raise _fail(path, f"'imgs' must be C-ordered uint8 of shape ({n}, 64, 64), "
                              f"got {dtype} {shape}{' (Fortran order)' if fortran else ''}")
        per_image = IMAGE_SIZE * IMAGE_SIZE
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            raw = _read_exact(stream, (stop - start) * per_image, path)
            chunk = np.frombuffer(raw, dtype=np.uint8).reshape(stop - start, IMAGE_SIZE, IMAGE_SIZE)
            if chunk.max(initial=0) > 1:
                raise _fail(path, f"'imgs' must be binary {{0, 1}}, found {int(chunk.max())} "
                                  f"in images {start}..{stop - 1}")
            np.multiply(chunk, np.uint8(255), out=out[start:stop, :, :, 0], dtype=np.uint8)


def preprocess(files: dict[str, Path], out_dir: Path, scratch: Path) -> None:
    """Write the dSprites NPZ ``files[FILENAME]`` to ``out_dir`` in the store layout (spec §1)."""
    if FILENAME not in files:
        raise ValueError(f"dSprites: missing file {FILENAME} (got {sorted(files)})")
    path = Path(files[FILENAME])
    if not zipfile.is_zipfile(path):
        raise _fail(path, "not a readable NPZ (not a zip archive)")
    try:
        data = np.load(path, encoding="latin1", allow_pickle=True)
    except Exception as err:  # noqa: BLE001
        raise _fail(path, f"not a readable NPZ ({type(err).__name__}: {err})") from None
    # The real file was written by Python 2: numpy warns about its headers and pickles.
    with data, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, message=".*Python 2.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*numpy.core.*")
        missing = sorted({"imgs", "latents_values", "latents_classes", "metadata"} - set(data.files))
        if missing:
            raise _fail(path, f"missing key(s) {missing}; found {sorted(data.files)}")
        metadata = _check_metadata(data, path)
        classes = np.asarray(data["latents_classes"])
        values = np.asarray(data["latents_values"])
    n = len(classes)
    if n == 0:
        raise _fail(path, "holds no images")
    _check_latents(classes, values, n, path)

    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = scratch / "dsprites_images.npy"
    images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, IMAGE_SIZE, IMAGE_SIZE, 1))
    try:
        _stream_images(path, n, images)
        images.flush()
        factors = pd.DataFrame(
            {name: classes[:, col].astype(np.int64) for name, col in FACTOR_COLUMNS.items()}
        )
        present = {name: np.unique(classes[:, col]).tolist() for name, col in FACTOR_COLUMNS.items()}
        meta = dsprites_meta(present)
        meta["source"] = f"dSprites, DeepMind NPZ {FILENAME} (spec datasets.md §1)"
        meta["licence"] = RESOURCES[0].licence
        meta["original"] = {k: str(metadata[k]) for k in ("title", "date", "version") if k in metadata}
        write_dataset(out_dir, images, factors, meta)
    finally:
        del images
        tmp.unlink(missing_ok=True)
