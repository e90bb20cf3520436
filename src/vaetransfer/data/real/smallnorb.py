"""The real SmallNORB (LeCun, Huang & Bottou 2004; spec datasets.md §3, §9; reference.md §4).

Six gzipped files ``smallnorb-{chunk}-{dat,cat,info}.mat.gz`` (chunks ``5x46789x9x18x6x2x96x96-
training`` and ``5x01235x9x18x6x2x96x96-testing``) in LeCun's binary matrix format (not MATLAB):
little-endian ``int32 magic``, ``int32 ndim``, ``max(3, ndim)`` int32 dimensions, then the data,
last index fastest. Magic 0x1E3D4C55 = uint8 matrix, 0x1E3D4C54 = int32 (also int16/float32/
float64 are defined). ``dat``: (24300, 2, 96, 96) uint8 stereo pairs; ``cat``: (24300,) int32
category; ``info``: (24300, 4) int32 = instance, elevation 0..8, azimuth 0, 2, .., 34, lighting.

Preprocessing is the authors' (= disentanglement_lib's), with their bugs fixed:

- training then testing, concatenated: all 48,600 images (their yaml's 46,789 is a mistake);
- first camera only (``dat[:, 0]``), ``PIL.Image.resize((64, 64), LANCZOS)`` (the old
  ``ANTIALIAS``), stored uint8 0..255 (loaders divide by 255);
- labels are read per image from ``cat``/``info`` (the authors decoded them from the storage
  index, which is wrong for SmallNORB): columns ``category`` (5), ``instance`` (10),
  ``elevation`` (9), ``azimuth`` (18, raw // 2) and ``lighting`` (6), all class indices.

The ``dat`` files (~450 MB each uncompressed) are decompressed as a stream, chunk by chunk, into
a memory-mapped uint8 array in ``scratch``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from vaetransfer.data.download import Resource
from vaetransfer.data.store import write_dataset
from vaetransfer.data.real._stream import read_exactly

BASE_URL = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
SPLITS = {"training": "5x46789x9x18x6x2x96x96-training", "testing": "5x01235x9x18x6x2x96x96-testing"}
LICENCE = (
    "SmallNORB: provided by NYU for research purposes only; it may not be sold, and publications "
    "must cite LeCun, Huang & Bottou, CVPR 2004 (wording unverified). Do not redistribute."
)


def filename(split: str, kind: str) -> str:
    """The resource file name of `kind` (dat, cat, info) of `split` (training, testing)."""
    return f"smallnorb-{SPLITS[split]}-{kind}.mat.gz"


# (split, kind): (bytes, sha256) from tensorflow/datasets url_checksums/smallnorb.txt (spec §3).
_CHECKSUMS = {
    ("training", "dat"): (131_896_188, "5ffd6272a07d32695ee1082a26a41a93a37aab8c28da047f8c34ed348d214873"),
    ("training", "cat"): (348, "2784e542c1922060691090952b6cd6278879a216c90f81476f0f00256d42cdaa"),
    ("training", "info"): (71_052, "de7eb932ebe7a4ee16217fead60660d0eb3d23632c2f4d1c51f88c501c17bf32"),
    ("testing", "dat"): (130_799_817, "cf7104eed3e51174d2f65b66d1e5878b9da233b886f161b0d88f4510ba2c7474"),
    ("testing", "cat"): (347, "ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e016e374836fc097f2e5ff509ff"),
    ("testing", "info"): (10_428, "16adf314226327ee006d1a44db8cfef52773c06c829951d5653a9f6f310248a2"),
}

RESOURCES = tuple(
    Resource(dataset="smallnorb", filename=filename(split, kind), url=BASE_URL + filename(split, kind),
             checksum=f"sha256:{sha}", size=size, licence=LICENCE)
    for (split, kind), (size, sha) in _CHECKSUMS.items()
)

MAGIC = {0x1E3D4C55: np.dtype(np.uint8), 0x1E3D4C54: np.dtype("<i4"), 0x1E3D4C56: np.dtype("<i2"),
         0x1E3D4C51: np.dtype("<f4"), 0x1E3D4C53: np.dtype("<f8")}
MAGIC_NAMES = {0x1E3D4C55: "uint8", 0x1E3D4C54: "int32", 0x1E3D4C56: "int16", 0x1E3D4C51: "float32",
               0x1E3D4C53: "float64"}
IMAGE_SIZE = 64
SOURCE_SIZE = 96
CHUNK = 1024  # stereo pairs per streamed chunk (18 MiB)

CATEGORY_NAMES = ["animal", "human", "airplane", "truck", "car"]
#: store factor -> (size, values): elevation 30°..70° in 5° steps, azimuth (raw // 2) in 20° steps.
FACTORS = {
    "category": (5, list(range(5))),
    "instance": (10, list(range(10))),
    "elevation": (9, [30 + 5 * i for i in range(9)]),
    "azimuth": (18, [20 * i for i in range(18)]),
    "lighting": (6, list(range(6))),
}


def _fail(path: Path, message: str) -> ValueError:
    return ValueError(f"SmallNORB file {path}: {message}")


def _open(path: Path):
    """Open a gzipped file as a stream (or a plain one, when it was gunzipped by hand)."""
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _read(stream, nbytes: int, path: Path, what: str) -> bytes:
    try:
        return read_exactly(stream, nbytes, what)
    except ValueError as err:
        raise _fail(path, str(err)) from None


def read_header(stream, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """Parse a LeCun binary-matrix header: (dtype, shape); ValueError naming `path` if malformed."""
    magic, ndim = np.frombuffer(_read(stream, 8, path, "header"), dtype="<i4").tolist()
    if magic not in MAGIC:
        raise _fail(path, f"bad magic number {magic:#x}; expected one of {[hex(m) for m in MAGIC]}")
    if not 1 <= ndim <= 16:
        raise _fail(path, f"implausible number of dimensions {ndim} in the header")
    dims = np.frombuffer(_read(stream, 4 * max(3, ndim), path, "header"), dtype="<i4").tolist()
    shape = tuple(dims[:ndim])
    if any(d < 0 for d in shape):
        raise _fail(path, f"negative dimension in the header: {shape}")
    return MAGIC[magic], shape


def _expect(path: Path, dtype, shape, want_dtype, want_shape) -> None:
    if dtype != want_dtype or shape != want_shape:
        raise _fail(path, f"expected a {want_dtype} matrix of shape {want_shape}, the header says "
                          f"{dtype} {shape}")


def _read_matrix(path: Path, want_dtype, want_tail: tuple[int, ...]) -> np.ndarray:
    with _open(path) as stream:
        dtype, shape = read_header(stream, path)
        _expect(path, dtype, shape, want_dtype, (shape[0], *want_tail))
        data = _read(stream, int(np.prod(shape)) * dtype.itemsize, path, "data")
        if stream.read(1):
            raise _fail(path, f"has bytes after the {shape} matrix")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _stream_images(path: Path, n: int, out: np.ndarray) -> None:
    """Resize the first camera of the `n` stereo pairs of `path` into `out` (n, 64, 64, 1)."""
    pair = 2 * SOURCE_SIZE * SOURCE_SIZE
    with _open(path) as stream:
        dtype, shape = read_header(stream, path)
        _expect(path, dtype, shape, np.dtype(np.uint8), (n, 2, SOURCE_SIZE, SOURCE_SIZE))
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            raw = _read(stream, (stop - start) * pair, path, f"images {start}..{stop - 1}")
            pairs = np.frombuffer(raw, dtype=np.uint8).reshape(stop - start, 2, SOURCE_SIZE, SOURCE_SIZE)
            for i, img in enumerate(pairs[:, 0]):
                resized = Image.fromarray(img).resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
                out[start + i, :, :, 0] = np.asarray(resized)
        if stream.read(1):
            raise _fail(path, f"has bytes after the {shape} matrix")


def _labels(files: dict[str, Path], split: str) -> pd.DataFrame:
    """Decoded labels of one split, checked against the value ranges of spec §3."""
    cat_path, info_path = Path(files[filename(split, "cat")]), Path(files[filename(split, "info")])
    cat = _read_matrix(cat_path, np.dtype("<i4"), ())
    info = _read_matrix(info_path, np.dtype("<i4"), (4,))
    if len(cat) != len(info):
        raise _fail(info_path, f"has {len(info)} rows but {cat_path.name} has {len(cat)}")
    frame = pd.DataFrame({"category": cat, "instance": info[:, 0], "elevation": info[:, 1],
                          "azimuth": info[:, 2], "lighting": info[:, 3]}).astype(np.int64)
    if ((frame["azimuth"] % 2) != 0).any():
        row = int(np.flatnonzero(frame["azimuth"].to_numpy() % 2)[0])
        raise _fail(info_path, f"row {row}: azimuth {frame['azimuth'][row]} is odd (expected 0, 2, .., 34)")
    frame["azimuth"] //= 2
    for name, (size, _) in FACTORS.items():
        bad = np.flatnonzero((frame[name] < 0) | (frame[name] >= size))
        if bad.size:
            path = cat_path if name == "category" else info_path
            raise _fail(path, f"row {int(bad[0])}: {name} {int(frame[name][bad[0]])} outside [0, {size})")
    return frame


def preprocess(files: dict[str, Path], out_dir: Path, scratch: Path) -> None:
    """Write the six SmallNORB files to ``out_dir`` in the store layout (spec §3)."""
    missing = sorted(r.filename for r in RESOURCES if r.filename not in files)
    if missing:
        raise ValueError(f"SmallNORB: missing file(s) {missing}")
    labels = {split: _labels(files, split) for split in SPLITS}
    n = sum(len(frame) for frame in labels.values())
    if n == 0:
        raise ValueError("SmallNORB: the cat/info files hold no images")
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = scratch / "smallnorb_images.npy"
    images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, IMAGE_SIZE, IMAGE_SIZE, 1))
    try:
        start, splits = 0, {}
        for split, frame in labels.items():
            stop = start + len(frame)
            _stream_images(Path(files[filename(split, "dat")]), len(frame), images[start:stop])
            splits[split] = [start, stop]
            start = stop
        images.flush()
        factors = {name: {"size": size, "values": values} for name, (size, values) in FACTORS.items()}
        factors["category"]["names"] = CATEGORY_NAMES
        factors["elevation"]["unit"] = factors["azimuth"]["unit"] = "degrees"
        meta = {
            "name": "smallnorb",
            "factors": factors,
            "source": "SmallNORB v1.0, NYU norb-v1.0-small, first camera (spec datasets.md §3)",
            "version": 1,
            "licence": LICENCE,
            "latent_factors": ["category", "elevation", "azimuth", "lighting"],
            "splits": splits,
            "complete": n == 48_600,
        }
        write_dataset(out_dir, images, pd.concat(labels.values(), ignore_index=True), meta)
    finally:
        del images
        tmp.unlink(missing_ok=True)
