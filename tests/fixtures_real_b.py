"""Tiny stand-ins for the original files of Symsol_reduced and CelebA (spec datasets.md §4, §5),
laid out like the real ones. Synthetic pixels only: no CelebA image (nor anything derived from one)
may appear in the repository, so the "faces" are seeded noise and gradients.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from vaetransfer.downstream import LABELS


SYMSOL_NAMES = ("tet", "cube", "icosa", "cone", "cyl")

#: The 40 attribute names of ``list_attr_celeba.txt``, header order (public metadata, no pixels).
CELEBA_ATTRIBUTES = LABELS["celeba"]  # the real header of list_attr_celeba.txt, in order
CELEBA_SIZE = (178, 218)  # (width, height) of img_align_celeba JPEGs


def symsol_members(per_shape: int = 2) -> list[tuple[str, int]]:
    """(member name, shape index) of the fixture archive, in archive (not sorted) order."""
    return [(f"symsol_reduced/{name}_{idx:05d}.png", s)
            for idx in range(per_shape) for s, name in enumerate(SYMSOL_NAMES)]


def symsol_pixels(member: str) -> np.ndarray:
    """Deterministic 64×64 uint8 grey pixels for ``member`` (seeded by its name)."""
    rng = np.random.default_rng(sum(member.encode()) * 7919 + len(member))
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < rng.integers(100, 600)
    return np.where(disc, rng.integers(60, 256, size=(64, 64)), 0).astype(np.uint8)


def _png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    img = Image.fromarray(pixels)
    if mode is not None:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_symsol_files(directory: Path, per_shape: int = 2,
                      extra: dict[str, bytes] | None = None) -> dict[str, Path]:
    """``symsol_reduced.zip`` of ``5·per_shape`` greyscale 64×64 PNGs ``symsol_reduced/{shape}_{i:05d}.png``
    (labels come from the file names; the archive has no label file), plus a directory entry and
    any ``extra`` members."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "symsol_reduced.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("symsol_reduced/", b"")
        for member, _ in symsol_members(per_shape):
            zf.writestr(member, _png(symsol_pixels(member)))
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
    return {"symsol_reduced.zip": path}


def celeba_pixels(index: int) -> np.ndarray:
    """Synthetic 218×178 RGB 'photo' number ``index``: a colour gradient plus seeded noise, bright
    enough everywhere (≥ 40) that black letterbox bars are distinguishable from content."""
    rng = np.random.default_rng(index)
    h, w = CELEBA_SIZE[1], CELEBA_SIZE[0]
    yy, xx = np.mgrid[:h, :w] / np.array([h, w])[:, None, None]
    base = rng.uniform(60, 200, size=3)
    ramp = rng.uniform(-40, 40, size=(2, 3))
    img = base + yy[..., None] * ramp[0] + xx[..., None] * ramp[1] + rng.normal(0, 8, size=(h, w, 3))
    return np.clip(img, 40, 255).astype(np.uint8)


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def celeba_attributes(n: int, seed: int = 0) -> np.ndarray:
    """(n, 40) int ±1 attribute values (seeded)."""
    return np.where(np.random.default_rng(seed).random((n, len(CELEBA_ATTRIBUTES))) < 0.4, 1, -1)


def attribute_text(names: list[str], values: np.ndarray, count: int | None = None,
                   header: tuple[str, ...] = CELEBA_ATTRIBUTES) -> str:
    """``list_attr_celeba.txt`` text: count line, header line, then ``<file> ±1 …`` rows padded
    with spaces like the original (``-1`` and `` 1`` line up)."""
    lines = [str(len(names) if count is None else count), " ".join(header)]
    lines += [name + " " + " ".join(f"{v:2d}" for v in row) for name, row in zip(names, values)]
    return "\n".join(lines) + "\n"


def make_celeba_files(directory: Path, n: int = 6, *, count: int | None = None, drop_image: int | None = None,
                      seed: int = 0) -> dict[str, Path]:
    """``img_align_celeba.zip`` (``img_align_celeba/000001.jpg`` …, written in reverse order so that
    sorting matters) and ``list_attr_celeba.txt`` for ``n`` synthetic images. ``count`` overrides the
    count line; ``drop_image`` (1-based) leaves that JPEG out of the zip while keeping its row."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    zip_path = directory / "img_align_celeba.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("img_align_celeba/", b"")
        for i in reversed(range(1, n + 1)):
            if i != drop_image:
                zf.writestr(f"img_align_celeba/{names[i - 1]}", jpeg_bytes(celeba_pixels(i)))
    attr_path = directory / "list_attr_celeba.txt"
    attr_path.write_text(attribute_text(names, celeba_attributes(n, seed), count))
    return {"img_align_celeba.zip": zip_path, "list_attr_celeba.txt": attr_path}
