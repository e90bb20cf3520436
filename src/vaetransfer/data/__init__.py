"""Datasets: procedural generators (dSprites, spec datasets.md §7; Symsol-like solids, §8a) and
the on-disk format every dataset is stored in (:mod:`vaetransfer.data.store`)."""

from vaetransfer.data.procedural import (
    DSPRITES_FACTORS,
    SHAPE_NAMES,
    dsprites_factor_table,
    dsprites_meta,
    generate_dsprites,
    render_dsprite,
)
from vaetransfer.data.store import (
    evaluation_indices,
    load_factors,
    load_images,
    load_meta,
    split_indices,
    write_dataset,
)
from vaetransfer.data.symsol import SYMSOL_SHAPES, generate_symsol, render_symsol, symsol_meta

__all__ = [
    "DSPRITES_FACTORS",
    "SHAPE_NAMES",
    "SYMSOL_SHAPES",
    "dsprites_factor_table",
    "dsprites_meta",
    "evaluation_indices",
    "generate_dsprites",
    "generate_symsol",
    "load_factors",
    "load_images",
    "load_meta",
    "render_dsprite",
    "render_symsol",
    "split_indices",
    "symsol_meta",
    "write_dataset",
]
