"""Tiny copies of the real dSprites, Cars3D and SmallNORB files, in their exact formats
(spec datasets.md §1-§3), made by the tests themselves: no download, no real pixels.

Each ``make_*_files(dir)`` writes the files under `dir` with the real file names and returns
{resource filename: path}, what :func:`vaetransfer.data.real.preprocess` takes. The ``*_EXPECTED``
helpers say what the fixture encoded, so tests can check the decoding.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zipfile
import tarfile
from pathlib import Path

import numpy as np
import scipy.io

from vaetransfer.data.procedural import DSPRITES_FACTORS, generate_dsprites

# ----------------------------------------------------------------------------------- dSprites
DSPRITES_FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
#: the sub-grid the fixture holds (class indices into the full grid): 3·2·2·2·2 = 48 images.
DSPRITES_SUBSET = {"shape": [0, 1, 2], "scale": [0, 5], "orientation": [0, 10], "pos_x": [0, 31],
                   "pos_y": [3, 16]}


def dsprites_arrays(subset=None) -> dict:
    """The NPZ's arrays for a sub-grid, in the real storage order (pos_y fastest)."""
    images, classes = generate_dsprites(subset or DSPRITES_SUBSET)
    n = len(classes)
    latents_classes = np.zeros((n, 6), dtype=np.int64)
    latents_values = np.ones((n, 6), dtype=np.float64)  # colour: class 0, value 1
    for col, name in enumerate(DSPRITES_FACTORS, start=1):
        latents_classes[:, col] = classes[name].to_numpy()
        latents_values[:, col] = DSPRITES_FACTORS[name][latents_classes[:, col]] + (name == "shape")
    metadata = {
        "date": "April 2017",
        "description": "Disentanglement test Sprites dataset. (test fixture)",
        "version": 1,
        "latents_names": ("color", "shape", "scale", "orientation", "posX", "posY"),
        "latents_possible_values": {
            "color": np.array([1.0]),
            "shape": np.array([1.0, 2.0, 3.0]),
            "scale": DSPRITES_FACTORS["scale"].copy(),
            "orientation": DSPRITES_FACTORS["orientation"].copy(),
            "posX": DSPRITES_FACTORS["pos_x"].copy(),
            "posY": DSPRITES_FACTORS["pos_y"].copy(),
        },
        "latents_sizes": np.array([1, 3, 6, 40, 32, 32]),
        "author": "test fixture",
        "title": "dSprites dataset",
    }
    return {
        "imgs": (images[..., 0] // 255).astype(np.uint8),  # the real file is binary {0, 1}
        "latents_values": latents_values,
        "latents_classes": latents_classes,
        "metadata": np.array(metadata, dtype=object),
    }


def npy_bytes(array: np.ndarray, py2: bool = True) -> bytes:
    """A .npy member as the real file has it when `py2`: written by Python 2 numpy, so the header
    shape has long-int suffixes (``(48L, 64L, 64L)``) and object arrays are protocol-2 pickles
    naming ``numpy.core.multiarray`` (numpy 2 reads both, with a warning)."""
    if array.dtype == object:
        body = pickle.dumps(array, protocol=2)
        if py2:
            body = body.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    else:
        body = np.ascontiguousarray(array).tobytes()
    dims = [f"{d}L" if py2 else str(d) for d in array.shape]
    shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
    descr = np.lib.format.dtype_to_descr(array.dtype)
    header = "{'descr': %r, 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += " " * ((16 - (10 + len(header) + 1) % 16) % 16) + "\n"  # py2-era 16-byte alignment
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + body


def write_npz(path: Path, arrays: dict, py2: bool = True) -> Path:
    """An NPZ (deflated zip of ``<key>.npy`` members) like ``np.savez_compressed`` writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, array in arrays.items():
            zf.writestr(f"{key}.npy", npy_bytes(np.asarray(array), py2))
    return path


def make_dsprites_files(dir) -> dict[str, Path]:
    """A 48-image dSprites NPZ under `dir`: compressed, the real keys, a pickled metadata dict,
    Python-2-style members like the real file."""
    path = write_npz(Path(dir) / DSPRITES_FILENAME, dsprites_arrays())
    return {DSPRITES_FILENAME: path}


# ------------------------------------------------------------------------------------ Cars3D
CARS3D_FILENAME = "nips2015-analogy-data.tar.gz"
#: file names in the order they are written into the tarball (deliberately not sorted).
CARS3D_NAMES = ["car_102_mesh", "car_007_mesh", "car_055_mesh"]
CARS3D_SIZE = 128  # the real 'im' is (128, 128, 3, 24, 4)


def cars3d_view(name: str, azimuth: int, elevation: int, size: int = CARS3D_SIZE) -> np.ndarray:
    """The (size, size, 3) uint8 view the fixture stores for car `name`: a flat colour coding
    (car, azimuth, elevation) plus a bright square whose position moves with the azimuth."""
    car = int(name.split("_")[1])
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[..., 0] = car * 2
    img[..., 1] = 10 * azimuth
    img[..., 2] = 40 * elevation + 20
    top = 4 * azimuth
    img[top:top + 24, 40:64] = 255
    return img


def cars3d_im(name: str, size: int = CARS3D_SIZE) -> np.ndarray:
    """The real 'im' layout: (H, W, 3, 24 azimuths, 4 elevations) uint8."""
    im = np.empty((size, size, 3, 24, 4), dtype=np.uint8)
    for az in range(24):
        for el in range(4):
            im[:, :, :, az, el] = cars3d_view(name, az, el, size)
    return im


def _tar_add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def make_cars3d_tar(path: Path, mats: dict[str, bytes], list_names) -> Path:
    """A tar.gz laid out like the real one: data/cars/*.mat + list.txt, plus unrelated members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for dirname in ("data", "data/cars", "data/sprites"):
            info = tarfile.TarInfo(dirname)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        _tar_add(tar, "data/sprites/sprites_splits.mat", b"not a car")
        _tar_add(tar, "data/shapes48.mat", b"not a car either")
        for name, payload in mats.items():
            _tar_add(tar, f"data/cars/{name}.mat", payload)
        _tar_add(tar, "data/cars/list.txt", "".join(f"{n}\n" for n in list_names).encode())
    return path


def mat_bytes(variables: dict) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, do_compression=True)  # MATLAB v5
    return buf.getvalue()


def make_cars3d_files(dir) -> dict[str, Path]:
    """A Cars3D tarball with three cars (real 'im' shape, MATLAB v5) under `dir`."""
    mats = {name: mat_bytes({"im": cars3d_im(name), "mask": np.zeros((8, 8, 24, 4), np.uint8)})
            for name in CARS3D_NAMES}
    path = make_cars3d_tar(Path(dir) / CARS3D_FILENAME, mats, sorted(CARS3D_NAMES))
    return {CARS3D_FILENAME: path}


# --------------------------------------------------------------------------------- SmallNORB
SMALLNORB_SPLITS = {"training": "5x46789x9x18x6x2x96x96-training",
                    "testing": "5x01235x9x18x6x2x96x96-testing"}
MAGIC_UINT8, MAGIC_INT32 = 0x1E3D4C55, 0x1E3D4C54


def smallnorb_filename(split: str, kind: str) -> str:
    return f"smallnorb-{SMALLNORB_SPLITS[split]}-{kind}.mat.gz"


def lecun_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """LeCun binary matrix: int32 magic, int32 ndim, max(3, ndim) int32 dims (padded with 1),
    then the data, little-endian, last index fastest."""
    if magic is None:
        magic = {np.dtype(np.uint8): MAGIC_UINT8, np.dtype("<i4"): MAGIC_INT32}[array.dtype]
    dims = list(array.shape) + [1] * (3 - array.ndim)
    return struct.pack(f"<ii{len(dims)}i", magic, array.ndim, *dims) + np.ascontiguousarray(array).tobytes()


def smallnorb_labels(split: str) -> np.ndarray:
    """(n, 5) int32 labels the fixture uses: category, instance, elevation, raw azimuth, lighting."""
    if split == "training":
        return np.array([[0, 4, 0, 0, 0], [1, 6, 8, 34, 5], [2, 7, 3, 10, 2],
                         [3, 8, 5, 20, 1], [4, 9, 1, 2, 4], [0, 4, 2, 16, 3]], dtype=np.int32)
    return np.array([[4, 0, 7, 32, 0], [3, 1, 0, 4, 5], [2, 5, 4, 18, 1]], dtype=np.int32)


def smallnorb_pair(label) -> np.ndarray:
    """(2, 96, 96) uint8 stereo pair for one label row: camera 0 is a flat grey encoding the label
    with a dark square, camera 1 is its negative (so taking the wrong camera is detected)."""
    cat, inst, elev, azim, light = (int(v) for v in label)
    cam0 = np.full((96, 96), 20 + 10 * cat + 3 * elev + 2 * light + azim, dtype=np.uint8)
    cam0[8 + 2 * inst:40 + 2 * inst, 30:62] = 5
    return np.stack([cam0, 255 - cam0])


def make_smallnorb_files(dir) -> dict[str, Path]:
    """The six gzipped LeCun-format SmallNORB files (6 training + 3 testing images) under `dir`."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in SMALLNORB_SPLITS:
        labels = smallnorb_labels(split)
        arrays = {
            "dat": np.stack([smallnorb_pair(row) for row in labels]).astype(np.uint8),
            "cat": labels[:, 0].astype("<i4"),
            "info": labels[:, 1:].astype("<i4"),
        }
        for kind, array in arrays.items():
            name = smallnorb_filename(split, kind)
            with gzip.open(dir / name, "wb") as fh:
                fh.write(lecun_bytes(array))
            files[name] = dir / name
    return files
