"""Build a dataset directory from its config entry (`datasets.<name>` of the config).

Procedural generators run offline (the embedded default, CI); real datasets are downloaded,
verified and preprocessed by `vaetransfer.data.real` (issue "five real datasets").
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from vaetransfer.data.procedural import dsprites_meta, generate_dsprites
from vaetransfer.data.store import write_dataset
from vaetransfer.data.symsol import generate_symsol, symsol_meta


def _dsprites(options: Mapping[str, Any]):
    factor_indices = options.get("factor_indices")
    images, factors = generate_dsprites(factor_indices)
    return images, factors, dsprites_meta(factor_indices)


def _symsol(options: Mapping[str, Any]):
    n, seed = options.get("n", 5000), options.get("seed", 0)
    images, factors = generate_symsol(n, seed)
    return images, factors, symsol_meta(n, seed)


#: Procedural generators by config `generator:` key.
GENERATORS: dict[str, Callable] = {"dsprites": _dsprites, "symsol": _symsol}


def build_dataset(
    name: str,
    spec: Mapping[str, Any],
    out_dir: str | os.PathLike,
    files: Mapping[str, str | os.PathLike] | None = None,
    scratch: str | os.PathLike | None = None,
) -> None:
    """Generate dataset `name` described by `spec` into `out_dir`, or, for `source: download`,
    verify its original `files` (filename -> local path) and preprocess them.

    Every original file is verified before anything is written: a corrupt one is moved aside
    (``<filename>.corrupt``) and :class:`vaetransfer.data.download.ChecksumError` raised, leaving
    `out_dir` untouched. `spec["files"]` (mirror overrides) may replace checksums. Temporaries go
    to `scratch` (default: a fresh directory under $TMPDIR, removed afterwards).
    """
    if spec["source"] == "download":
        _build_real(name, spec, out_dir, files, scratch)
        return
    generator = spec["generator"]
    if generator not in GENERATORS:
        raise ValueError(f"datasets.{name}.generator: unknown {generator!r}; known: {sorted(GENERATORS)}")
    images, factors, meta = GENERATORS[generator](spec.get("options", {}))
    meta = {**meta, "name": name, "source": f"procedural:{generator}"}
    write_dataset(out_dir, images, factors, meta)


def _build_real(name, spec, out_dir, files, scratch) -> None:
    from vaetransfer.data import download, real

    resources = download.apply_overrides(name, real.resources(name), spec.get("files"))
    files = {key: Path(value) for key, value in (files or {}).items()}
    absent = [r for r in resources if r.filename not in files or not files[r.filename].exists()]
    if absent:
        raise download.MissingResource(
            "\n\n".join(
                download.missing_message(r, download.DOWNLOADS_DIR, "the file is not on disk") for r in absent
            )
        )
    for resource in resources:
        download.verify(files[resource.filename], resource)
        print(f"{files[resource.filename]}: verified", file=sys.stderr)
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
        real.preprocess(name, files, out_dir, scratch)
        return
    with tempfile.TemporaryDirectory(prefix=f"vaetransfer-{name}-") as tmp:
        real.preprocess(name, files, out_dir, tmp)
