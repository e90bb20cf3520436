"""The real Cars3D (Reed et al. 2015; spec datasets.md §2, §9; reference.md §4) into the store.

The tarball ``nips2015-analogy-data.tar.gz`` holds ``data/cars/car_XXX_mesh.mat`` (183 MATLAB v5
files; key ``im``: uint8 (128, 128, 3, 24, 4) = (H, W, RGB, azimuth, elevation)) and
``data/cars/list.txt``; ``data/sprites`` and ``data/shapes48.mat`` are other datasets, skipped.

Preprocessing is the authors' (= disentanglement_lib's):

- ``np.einsum("abcde->deabc", im)`` -> (24 azimuth, 4 elevation, H, W, 3), flattened to 96 views
  with ``elevation = k % 4`` and ``azimuth = k // 4``;
- each view goes through ``PIL.Image.thumbnail((64, 64), LANCZOS)`` (the old ``ANTIALIAS``),
  giving 64×64×3 uint8 (stored 0..255; loaders divide by 255);
- object ids: the position of the file in the **sorted** file names (the authors used unsorted
  ``ListDirectory`` order; sorting makes it deterministic, spec §2 "Quirk").

Rows are in the authors' canonical state-space order for factor sizes [elevation 4, azimuth 24,
object n] (``StateSpaceAtomIndex``): ``row = (elevation·24 + azimuth)·n + object``, so the object
varies fastest. Factor columns ``elevation``, ``azimuth``, ``object`` hold class indices.

The tarball is read once as a stream; only the car ``.mat`` files are extracted to ``scratch``
and the 64×64 images are written into a memory-mapped uint8 array there.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import scipy.io
from PIL import Image

from vaetransfer.data.download import Resource
from vaetransfer.data.store import write_dataset

FILENAME = "nips2015-analogy-data.tar.gz"

RESOURCES = (
    Resource(
        dataset="cars3d",
        filename=FILENAME,
        url=f"http://www.scottreed.info/files/{FILENAME}",
        # Full-file md5 from nmichlo/disent (spec §2 "Checksum"); the size is not published.
        checksum="md5:4e866a7919c1beedf53964e6f7a23686",
        size=None,
        licence=(
            "Cars3D: no licence is published with the tarball; renderings of the 3D CAD car "
            "models of Fidler, Dickinson & Urtasun (NIPS 2012). Research use only, do not "
            "redistribute; cite Reed et al. 2015, 'Deep Visual Analogy-Making'."
        ),
    ),
)

N_ELEVATION = 4
N_AZIMUTH = 24
N_OBJECTS_REAL = 183
IMAGE_SIZE = 64


def _fail(path, message: str) -> ValueError:
    return ValueError(f"Cars3D file {path}: {message}")


def _extract_cars(archive: Path, dest: Path) -> tuple[list[Path], list[str] | None]:
    """Stream `archive` once; copy each ``cars/*.mat`` member to `dest`. Returns the extracted
    files sorted by name and the names listed in ``cars/list.txt`` (None when absent)."""
    dest.mkdir(parents=True, exist_ok=True)
    extracted, listed = [], None
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                name = PurePosixPath(member.name)
                if not member.isfile() or name.parent.name != "cars":
                    continue
                if name.suffix == ".mat":
                    target = dest / name.name  # basename only: no path from the archive is trusted
                    with tar.extractfile(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    extracted.append(target)
                elif name.name == "list.txt":
                    with tar.extractfile(member) as src:
                        text = src.read().decode("utf-8", errors="replace")
                    listed = [line.strip().removesuffix(".mat") for line in text.splitlines() if line.strip()]
    except (tarfile.TarError, OSError, EOFError) as err:
        raise _fail(archive, f"not a readable .tar.gz ({type(err).__name__}: {err})") from None
    if not extracted:
        raise _fail(archive, "holds no cars/*.mat files (expected data/cars/car_XXX_mesh.mat)")
    if len({p.name for p in extracted}) != len(extracted):
        raise _fail(archive, "holds duplicate cars/*.mat file names")
    return sorted(extracted, key=lambda p: p.name), listed


def _views(mat: Path, label: str) -> np.ndarray:
    """The 96 views of one car, (96, H, W, 3) uint8, view k = (azimuth k // 4, elevation k % 4)."""
    try:
        content = scipy.io.loadmat(mat, variable_names=["im"])
    except Exception as err:  # noqa: BLE001 - any parse failure is a malformed file
        raise _fail(label, f"not a readable MATLAB file ({type(err).__name__}: {err})") from None
    if "im" not in content:
        raise _fail(label, "has no variable 'im'")
    im = content["im"]
    if (im.ndim != 5 or im.shape[2:] != (3, N_AZIMUTH, N_ELEVATION) or im.shape[0] != im.shape[1]
            or im.shape[0] < IMAGE_SIZE or im.dtype != np.uint8):
        raise _fail(label, f"'im' must be uint8 (H, H, 3, {N_AZIMUTH}, {N_ELEVATION}) with H >= "
                           f"{IMAGE_SIZE} (real: 128), got {im.dtype} {im.shape}")
    views = np.einsum("abcde->deabc", im)
    return views.reshape(N_AZIMUTH * N_ELEVATION, *views.shape[2:])


def _thumbnail(view: np.ndarray) -> np.ndarray:
    img = Image.fromarray(np.ascontiguousarray(view))
    img.thumbnail((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
    return np.asarray(img)


def factor_table(n_objects: int) -> pd.DataFrame:
    """Factor classes of every row, in the canonical order (elevation slowest, object fastest)."""
    grids = np.meshgrid(np.arange(N_ELEVATION), np.arange(N_AZIMUTH), np.arange(n_objects), indexing="ij")
    names = ("elevation", "azimuth", "object")
    return pd.DataFrame({name: g.ravel().astype(np.int64) for name, g in zip(names, grids)})


def preprocess(files: dict[str, Path], out_dir: Path, scratch: Path) -> None:
    """Write the Cars3D tarball ``files[FILENAME]`` to ``out_dir`` in the store layout (spec §2)."""
    if FILENAME not in files:
        raise ValueError(f"Cars3D: missing file {FILENAME} (got {sorted(files)})")
    archive = Path(files[FILENAME])
    scratch = Path(scratch)
    mat_dir = scratch / "cars3d_mat"
    tmp = scratch / "cars3d_images.npy"
    images = None
    try:
        mats, listed = _extract_cars(archive, mat_dir)
        n_obj = len(mats)
        n = N_ELEVATION * N_AZIMUTH * n_obj
        shape = (n, IMAGE_SIZE, IMAGE_SIZE, 3)
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        for obj, mat in enumerate(mats):
            views = _views(mat, f"{archive} member cars/{mat.name}")
            for k, view in enumerate(views):
                elevation, azimuth = k % N_ELEVATION, k // N_ELEVATION
                images[(elevation * N_AZIMUTH + azimuth) * n_obj + obj] = _thumbnail(view)
            mat.unlink()
        images.flush()
        names = [p.stem for p in mats]
        meta = {
            "name": "cars3d",
            "factors": {
                "elevation": {"size": N_ELEVATION, "values": list(range(N_ELEVATION))},
                "azimuth": {"size": N_AZIMUTH, "values": list(range(N_AZIMUTH))},
                "object": {"size": n_obj, "values": list(range(n_obj)), "names": names},
            },
            "source": f"Cars3D, {FILENAME} data/cars/*.mat (spec datasets.md §2)",
            "version": 1,
            "licence": RESOURCES[0].licence,
            "order": "row = (elevation * 24 + azimuth) * n_objects + object (authors' canonical index)",
            "complete": n_obj == N_OBJECTS_REAL,
            "list_txt_matches_sorted_names": None if listed is None else listed == names,
        }
        write_dataset(out_dir, images, factor_table(n_obj), meta)
    finally:
        del images
        tmp.unlink(missing_ok=True)
        shutil.rmtree(mat_dir, ignore_errors=True)
