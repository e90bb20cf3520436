"""CelebA (Liu et al., ICCV 2015): 202,599 aligned faces with 40 binary attributes, preprocessed as
the authors' ``vae_ld/data/celeba.py`` does (spec datasets.md §0, §5; reference.md §4).

Original files (spec §5 table; Google Drive ids from torchvision, sizes and sha256 from TFDS):
``img_align_celeba.zip`` (``img_align_celeba/000001.jpg`` … ``202599.jpg``, 178×218 RGB) and
``list_attr_celeba.txt`` (line 1: the image count; line 2: the 40 attribute names; then
``<file> ±1 …``). Both are served by Google Drive, which needs a confirmation step (``gdrive``).

Preprocessing, exactly the authors' recipe (spec §5):

- ``img.thumbnail((64, 64))`` on the freshly opened JPEG (Pillow defaults): 178×218 → 52×64;
- ``PIL.ImageOps.pad(img, (64, 64))``: centred, black bars of 6 px left and right;
- stored as uint8 (N, 64, 64, 3) instead of the authors' float32 ``/255`` (2.5 GB, not 10 GB);
- all 40 attributes, −1 → 0 and 1 → 1, one int column per header name (factor size 2,
  ``values`` [-1, 1] = the raw value of code 0 and 1), matched to the images by file name.

Checks (each error names the file): the count line equals the number of attribute rows and the
number of JPEGs in the zip; every JPEG has exactly one attribute row and every row a JPEG; every
row has one ±1 per header name; the paper's eight attributes (spec §0) are in the header.

Deviation: images are ordered by sorted member name (= numeric file order), not the authors'
``glob`` order (spec §5 recommendation); labels follow their images, so only the order differs.

Memory: the JPEGs stream from the zip (no extraction) into a memory-mapped uint8 array in
``scratch``, written in windows of :data:`CHUNK` images that are unmapped once flushed; the
attribute table is ~65 MB. ``benchmarks/celeba_memory.py`` measures the peak.

Licence: non-commercial research only; the agreement forbids redistributing images or derived
data, so no CelebA pixels may be shipped anywhere (tests use synthetic JPEGs).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from vaetransfer.data.download import Resource
from vaetransfer.data.store import IMAGE_SIZE, write_dataset

IMAGES = "img_align_celeba.zip"
ATTRIBUTES = "list_attr_celeba.txt"
EXPECTED_N = 202_599
#: The attributes the paper classifies (spec §0 / Table 1); the store keeps all 40.
PAPER_ATTRIBUTES = ("Attractive", "Blond_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Smiling",
                    "Wavy_Hair", "Wearing_Lipstick")
LICENCE = (
    "CelebA (Liu et al. 2015): non-commercial research purposes only; redistributing the images or "
    "data derived from them is not allowed (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)."
)
CHUNK = 4096  # images written per memory-map window
SIZE = (IMAGE_SIZE, IMAGE_SIZE)


def _drive(file_id: str) -> str:
    return f"https://drive.google.com/uc?export=download&id={file_id}"


RESOURCES = (
    Resource(dataset="celeba", filename=IMAGES, url=_drive("0B7EVK8r0v71pZjFTYXZWM3FlRnM"),
             checksum="sha256:46fb89443c578308acf364d7d379fe1b9efb793042c0af734b6112e4fd3a8c74",
             size=1_443_490_838, gdrive=True, licence=LICENCE),
    Resource(dataset="celeba", filename=ATTRIBUTES, url=_drive("0B7EVK8r0v71pblRyaVFSWGxPY0U"),
             checksum="sha256:f0e5da289d5ccf75ffe8811132694922b60f2af59256ed362afa03fefba324d0",
             size=26_721_026, gdrive=True, licence=LICENCE),
)


def letterbox(img: Image.Image) -> np.ndarray:
    """The authors' recipe on an opened image: thumbnail to fit 64×64, then pad with black to
    64×64, centred; returns (64, 64, 3) uint8."""
    img.thumbnail(SIZE)
    padded = ImageOps.pad(img, SIZE)
    if padded.mode != "RGB":
        padded = padded.convert("RGB")
    return np.asarray(padded, dtype=np.uint8)


def read_attributes(path: Path) -> tuple[int, pd.DataFrame]:
    """(count line, DataFrame indexed by file name with one 0/1 int64 column per attribute)."""
    with open(path, encoding="utf-8") as fh:
        first, second = fh.readline(), fh.readline()
    try:
        count = int(first.strip())
    except ValueError:
        raise ValueError(f"{path}: line 1 must be the image count, got {first.strip()[:60]!r}") from None
    header = second.split()
    if not header or len(set(header)) != len(header):
        raise ValueError(f"{path}: line 2 must list distinct attribute names, got {second.strip()[:80]!r}")
    missing = [a for a in PAPER_ATTRIBUTES if a not in header]
    if missing:
        raise ValueError(f"{path}: the header lacks the paper's attributes {missing}")
    try:
        frame = pd.read_csv(path, sep=r"\s+", skiprows=2, header=None, dtype={0: str}, engine="c")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise ValueError(f"{path}: malformed attribute rows ({err})") from None
    if frame.shape[1] != len(header) + 1:
        raise ValueError(f"{path}: rows have {frame.shape[1]} fields but the header names {len(header)} "
                         f"attributes (expected a file name plus one ±1 per attribute)")
    frame.columns = ["file", *header]
    if frame[header].isna().any().any():
        row = int(np.flatnonzero(frame[header].isna().any(axis=1).to_numpy())[0])
        raise ValueError(f"{path}: row for {frame['file'].iloc[row]} (line {row + 3}) has fewer than "
                         f"{len(header)} attribute values")
    values = frame[header].to_numpy()
    bad = ~np.isin(values, (-1, 1))
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"{path}: row for {frame['file'].iloc[row]} (line {row + 3}) has values other than ±1")
    if frame["file"].duplicated().any():
        raise ValueError(f"{path}: duplicate rows for {frame['file'][frame['file'].duplicated()].iloc[0]}")
    labels = pd.DataFrame((values == 1).astype(np.int64), columns=header, index=frame["file"].to_numpy())
    return count, labels


def jpeg_members(archive: zipfile.ZipFile, path: Path) -> list[str]:
    """Sorted JPEG member names (macOS resource forks skipped); ValueError on none or duplicates."""
    names = sorted(
        info.filename for info in archive.infolist()
        if not info.is_dir() and info.filename.lower().endswith((".jpg", ".jpeg"))
        and not info.filename.startswith("__MACOSX/") and not PurePosixPath(info.filename).name.startswith("._")
    )
    if not names:
        raise ValueError(f"{path}: no JPEG images in the archive (expected img_align_celeba/*.jpg)")
    base = pd.Series([PurePosixPath(n).name for n in names])
    if base.duplicated().any():
        raise ValueError(f"{path}: the file name {base[base.duplicated()].iloc[0]} occurs twice")
    return names


def _match(members: list[str], labels: pd.DataFrame, count: int, zip_path: Path, attr_path: Path) -> pd.DataFrame:
    """Attribute rows in image order; ValueError naming the files on any count or name mismatch."""
    if count != len(labels):
        raise ValueError(f"{attr_path}: count line says {count} images but the file has {len(labels)} rows")
    names = [PurePosixPath(m).name for m in members]
    no_row = sorted(set(names) - set(labels.index))
    if no_row:
        raise ValueError(f"{attr_path}: no attribute row for {len(no_row)} image(s) of {zip_path.name}, "
                         f"e.g. {no_row[:3]}")
    no_image = sorted(set(labels.index) - set(names))
    if no_image:
        raise ValueError(f"{zip_path}: missing {len(no_image)} image(s) listed in {attr_path.name}, "
                         f"e.g. {no_image[:3]}")
    if count != len(members):
        raise ValueError(f"{zip_path}: {len(members)} images but {attr_path.name} says {count}")
    return labels.loc[names].reset_index(drop=True)


def preprocess(files: dict[str, Path], out_dir: Path, scratch: Path) -> None:
    """Stream the CelebA JPEGs into ``out_dir``: images (N, 64, 64, 3) uint8 + 40 attribute columns."""
    for name in (IMAGES, ATTRIBUTES):
        if name not in files:
            raise ValueError(f"celeba: resource {name} missing from files {sorted(files)}")
    zip_path, attr_path = Path(files[IMAGES]), Path(files[ATTRIBUTES])
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    buffer = scratch / "celeba_images.npy"
    count, labels = read_attributes(attr_path)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = jpeg_members(archive, zip_path)
            factors = _match(members, labels, count, zip_path, attr_path)
            del labels
            n, shape = len(members), (IMAGE_SIZE, IMAGE_SIZE, 3)
            array = np.lib.format.open_memmap(buffer, mode="w+", dtype=np.uint8, shape=(n, *shape))
            offset = int(array.offset)
            del array
            for start in range(0, n, CHUNK):
                stop = min(start + CHUNK, n)
                window = np.memmap(buffer, dtype=np.uint8, mode="r+", shape=(stop - start, *shape),
                                   offset=offset + start * int(np.prod(shape)))
                for i in range(start, stop):
                    window[i - start] = _decode(archive.read(members[i]), members[i], zip_path)
                window.flush()
                del window
        meta = {
            "name": "celeba",
            "factors": {a: {"size": 2, "values": [-1, 1]} for a in factors.columns},
            "source": "CelebA img_align_celeba.zip + list_attr_celeba.txt (Liu et al. 2015)",
            "version": 1,
            "expected_n": EXPECTED_N,
            "paper_attributes": list(PAPER_ATTRIBUTES),
            "preprocessing": "PIL thumbnail((64, 64)) then ImageOps.pad((64, 64)), black bars; uint8",
            "order": "sorted zip member names (the authors used glob order)",
            "licence": LICENCE,
        }
        images = np.load(buffer, mmap_mode="r")
        write_dataset(out_dir, images, factors, meta)
        del images
    finally:
        buffer.unlink(missing_ok=True)


def _decode(data: bytes, member: str, zip_path: Path) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return letterbox(img)
    except (OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"{zip_path}: {member} is not a readable image ({err})") from None
