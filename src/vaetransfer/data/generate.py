"""Build a dataset directory from its config entry (`datasets.<name>` of the config).

Procedural generators run offline (the embedded default, CI); real datasets are downloaded,
verified and preprocessed by `vaetransfer.data.real` (issue "five real datasets").
"""

from __future__ import annotations

import os
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


def build_dataset(name: str, spec: Mapping[str, Any], out_dir: str | os.PathLike) -> None:
    """Generate (or download and preprocess) dataset `name` described by `spec` into `out_dir`."""
    if spec["source"] == "download":
        from vaetransfer.data.real import prepare_real_dataset

        prepare_real_dataset(name, out_dir)
        return
    generator = spec["generator"]
    if generator not in GENERATORS:
        raise ValueError(f"datasets.{name}.generator: unknown {generator!r}; known: {sorted(GENERATORS)}")
    images, factors, meta = GENERATORS[generator](spec.get("options", {}))
    meta = {**meta, "name": name, "source": f"procedural:{generator}"}
    write_dataset(out_dir, images, factors, meta)
