"""Symsol_reduced (Bonheme & Grzes, FONDUE 2022): the authors' reduction of SYMSOL I (Murphy et al.
2021) to 112,791 greyscale 64×64 renderings of the five unmarked solids (spec datasets.md §4,
reference.md §4).

Original file: ``symsol_reduced.zip`` from the Kent Data Repository item 436 (the authors'
``bin/config/dataset/symsol.yaml``). No checksum is published, so the resource's checksum is None:
the downloader records the sha256 of the first download and verifies later copies against it
(trust on first use, spec §4 and §9).

Layout and labels (spec §4): ``symsol_reduced/*.png``, 64×64 greyscale. The only label is the shape,
the index in ``["tet", "cube", "icosa", "cone", "cyl"]`` of the first name that occurs as a
substring of the image's path (the authors' ``SymSol.save_images``). The archive carries no
rotation file, so unlike the procedural renderer (:mod:`vaetransfer.data.symsol`, whose ``shape``
column uses the same five classes in the same order) there are no quaternion columns.

Preprocessing, as the authors did (``imageio.imread`` then ``/255``): the pixels are stored
unchanged as uint8 (N, 64, 64, 1); dividing by 255 is left to the consumer (store.py).

Deviations, all recorded in ``meta.json``:

- order: sorted member names, not the authors' ``glob`` (file-system) order, so the dataset and
  every index into it are reproducible (spec §4/§5 recommendation);
- the label is matched against the member's file name, not the full extraction path, so a data
  directory whose path happens to contain e.g. "cyl" cannot mislabel every image;
- a PNG that is not 8-bit greyscale ('L') is converted with Pillow (``convert("L")``) and counted in
  ``meta["converted_modes"]``; the authors' ``imread`` would have given an array of another shape
  (and crashed), so the real archive is expected to need no conversion. 16-bit PNGs are refused.

The images stream from the zip into a memory-mapped uint8 array in ``scratch`` (no extraction);
peak memory is a few MB plus the pages of that map.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image

from vaetransfer.data.download import Resource
from vaetransfer.data.store import IMAGE_SIZE, write_dataset
from vaetransfer.data.symsol import SYMSOL_SHAPES

log = logging.getLogger(__name__)

ARCHIVE = "symsol_reduced.zip"
URL = "https://data.kent.ac.uk/436/1/symsol_reduced.zip"
#: Class names of the ``shape`` label, in the authors' order (spec §4: SYMSOL I's unmarked shapes).
SHAPE_NAMES = ("tet", "cube", "icosa", "cone", "cyl")
#: Image count the authors report (``bin/config/dataset/symsol.yaml``, spec §0/§4).
EXPECTED_N = 112_791
LICENCE = (
    "Symsol_reduced (Bonheme & Grzes 2022, Kent Data Repository item 436), derived from SYMSOL "
    "(Murphy et al., ICML 2021); no dataset licence is stated by either source (spec datasets.md §4): "
    "cite both and do not redistribute."
)
CHUNK = 4096  # images written per memory-map window

RESOURCES = (
    Resource(dataset="symsol", filename=ARCHIVE, url=URL, checksum=None, size=None, gdrive=False,
             licence=LICENCE),
)


def shape_label(member: str) -> int:
    """Index in :data:`SHAPE_NAMES` of the first name occurring in ``member``'s file name."""
    name = PurePosixPath(member).name
    for index, shape in enumerate(SHAPE_NAMES):
        if shape in name:
            return index
    raise ValueError(f"{member}: no shape name of {list(SHAPE_NAMES)} in the file name")


def png_members(archive: zipfile.ZipFile, path: Path) -> list[str]:
    """Sorted names of the PNG members (macOS resource forks skipped); ValueError if none."""
    names = sorted(
        info.filename for info in archive.infolist()
        if not info.is_dir() and info.filename.lower().endswith(".png")
        and not info.filename.startswith("__MACOSX/") and not PurePosixPath(info.filename).name.startswith("._")
    )
    if not names:
        raise ValueError(f"{path}: no PNG images in the archive (expected symsol_reduced/*.png)")
    return names


def decode_grey(data: bytes, member: str, converted: Counter) -> np.ndarray:
    """(64, 64) uint8 pixels of PNG ``data``; ValueError naming ``member`` on a bad image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode.startswith("I") or img.mode == "F":
                raise ValueError(f"{member}: {img.mode!r} (16/32-bit) PNGs are not supported, expected 8-bit grey")
            if img.mode != "L":
                converted[img.mode] += 1
                img = img.convert("L")
            pixels = np.asarray(img, dtype=np.uint8)
    except (OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"{member}: not a readable PNG ({err})") from None
    if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{member}: image is {pixels.shape[1]}x{pixels.shape[0]}, expected 64x64")
    return pixels


def preprocess(files: dict[str, Path], out_dir: Path, scratch: Path) -> None:
    """Stream ``symsol_reduced.zip`` into ``out_dir`` (images (N, 64, 64, 1) uint8 + ``shape``)."""
    if ARCHIVE not in files:
        raise ValueError(f"symsol: resource {ARCHIVE} missing from files {sorted(files)}")
    path = Path(files[ARCHIVE])
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    buffer = scratch / "symsol_images.npy"
    converted: Counter = Counter()
    try:
        with zipfile.ZipFile(path) as archive:
            members = png_members(archive, path)
            labels = np.array([shape_label(m) for m in members], dtype=np.int64)
            n = len(members)
            shape = (IMAGE_SIZE, IMAGE_SIZE, 1)
            offset = _create(buffer, (n, *shape))
            for start in range(0, n, CHUNK):
                stop = min(start + CHUNK, n)
                window = np.memmap(buffer, dtype=np.uint8, mode="r+", shape=(stop - start, *shape),
                                   offset=offset + start * int(np.prod(shape)))
                for i in range(start, stop):
                    window[i - start, :, :, 0] = decode_grey(archive.read(members[i]), members[i], converted)
                window.flush()
                del window
        if n != EXPECTED_N:
            log.warning("symsol: %s holds %d images, the authors report %d", path, n, EXPECTED_N)
        counts = np.bincount(labels, minlength=len(SHAPE_NAMES))
        meta = {
            "name": "symsol",
            "factors": {"shape": {"size": len(SHAPE_NAMES), "values": list(SHAPE_NAMES),
                                  "long_names": list(SYMSOL_SHAPES)}},
            "source": URL,
            "version": 1,
            "variant": "symsol_reduced",
            "expected_n": EXPECTED_N,
            "class_counts": {s: int(c) for s, c in zip(SHAPE_NAMES, counts)},
            "converted_modes": dict(converted),
            "order": "sorted zip member names (the authors used glob order)",
            "licence": LICENCE,
        }
        images = np.load(buffer, mmap_mode="r")
        write_dataset(out_dir, images, pd.DataFrame({"shape": labels}), meta)
        del images
    finally:
        buffer.unlink(missing_ok=True)


def _create(path: Path, shape: tuple[int, ...]) -> int:
    """Create the .npy ``path`` for uint8 ``shape`` (sparse, zero-filled); return its data offset."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    offset = int(array.offset)
    del array
    return offset
