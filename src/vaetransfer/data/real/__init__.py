"""The five real datasets of the paper (spec datasets.md §1-§5): their original files and how each
is preprocessed into the common store layout (:mod:`vaetransfer.data.store`).

Each dataset module ``vaetransfer.data.real.<name>`` declares ``RESOURCES`` (its original files,
:class:`vaetransfer.data.download.Resource`) and ``preprocess(files, out_dir, scratch)``:
``files`` maps each resource's filename to its verified local path, ``out_dir`` receives
``images.npy`` + ``factors.parquet`` + ``meta.json`` (written with
:func:`vaetransfer.data.store.write_dataset`), ``scratch`` is a directory for temporaries
(extracted archives, the memory-mapped image array being filled).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Mapping

REAL_DATASETS = ("dsprites", "cars3d", "smallnorb", "symsol", "celeba")


def dataset_module(name: str) -> ModuleType:
    """The module of real dataset ``name``; ValueError names the known ones."""
    if name not in REAL_DATASETS:
        raise ValueError(f"datasets.{name}: no real dataset called {name!r}; known: {list(REAL_DATASETS)}")
    return importlib.import_module(f"vaetransfer.data.real.{name}")


def resources(name: str):
    """The original files of real dataset ``name`` (its module's ``RESOURCES``)."""
    return dataset_module(name).RESOURCES


def preprocess(name: str, files: Mapping[str, str | os.PathLike], out_dir: str | os.PathLike,
               scratch: str | os.PathLike) -> None:
    """Preprocess the verified original files of ``name`` into ``out_dir`` (store layout)."""
    dataset_module(name).preprocess({k: Path(v) for k, v in files.items()}, Path(out_dir), Path(scratch))
