"""Real datasets (dSprites, Cars3D, SmallNORB, Symsol_reduced, CelebA): download, verify, preprocess.

Not implemented yet: this belongs to the issue "The five real datasets". The paper-scale config
already names them so that its DAG can be planned (`snakemake -n`); running it stops here with
a clear message instead of producing anything wrong.
"""

from __future__ import annotations

import os

REAL_DATASETS = ("dsprites", "cars3d", "smallnorb", "symsol", "celeba")


def prepare_real_dataset(name: str, out_dir: str | os.PathLike) -> None:
    if name not in REAL_DATASETS:
        raise ValueError(f"datasets.{name}: no real dataset called {name!r}; known: {list(REAL_DATASETS)}")
    raise NotImplementedError(
        f"datasets.{name}: source 'download' is not available yet (download, checksum and "
        f"preprocessing of the real datasets are still to be built); use source: procedural "
        f"(see config/quick.yaml)"
    )
