"""Supervised training of the Appendix H classifier (spec reference.md §1.3): labels and the step.

The classifier is trained like the VAEs (Adam, lr 1e-4, batch 64, the same loop in
:mod:`vaetransfer.train`), on integer class labels of every discrete ground-truth factor, with the
summed cross-entropy (:func:`vaetransfer.models.summed_cross_entropy`). Its "objective" is registered
in :data:`CLASSIFIER_OBJECTIVES` under the key used in configs, wildcards and file names; like the
vanilla ``vae`` its hyper-parameter (``weight``) exists only so that every run has a
(name, value) pair, and may only be 1.

Logged per step: ``loss``, then ``ce_<factor>`` and ``accuracy_<factor>`` for each head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from vaetransfer.models import ConvClassifier, accuracies


@dataclass(frozen=True)
class ClassifierObjective:
    """A registered supervised objective; mirrors :class:`vaetransfer.objectives.Objective`'s
    ``hparam``/``check_hparam``/``resolve_options`` so plans and configs treat both alike."""

    hparam: str
    description: str
    hparam_values: tuple[float, ...] = (1.0,)
    options: Mapping[str, tuple[str, ...]] = None  # type: ignore[assignment]

    def check_hparam(self, value: float) -> None:
        if value not in self.hparam_values:
            raise ValueError(f"{self.hparam}={value!r} is not allowed; valid: {list(self.hparam_values)}")

    def resolve_options(self, options: Mapping | None = None) -> dict:
        if options:
            raise ValueError(f"unknown option(s) {sorted(options)}; valid: []")
        return {}


CLASSIFIER_OBJECTIVES: dict[str, ClassifierObjective] = {
    "cross_entropy": ClassifierObjective(
        "weight", "sum over factors of the softmax cross-entropy (Appendix H); weight fixed at 1"
    ),
}
#: The authors' classifier sampler holds out 20 % (``clf_sampler.yaml``, validation_split 0.2).
CLASSIFIER_VALIDATION_FRACTION = 0.2


def discrete_factors(meta: Mapping) -> dict[str, int]:
    """{factor: number of classes} of the discrete factors of a dataset's meta (continuous ones,
    size 0, e.g. Symsol's quaternion, get no head), in meta order; ValueError if there is none."""
    found = {name: int(entry["size"]) for name, entry in meta["factors"].items() if int(entry["size"]) >= 2}
    if not found:
        raise ValueError(f"dataset {meta.get('name')!r} has no discrete factor with >= 2 classes to classify")
    return found


def factor_labels(factors: pd.DataFrame, meta: Mapping) -> np.ndarray:
    """Integer class labels (N, n_heads) int64, one column per :func:`discrete_factors` entry.

    A factor's stored column holds either its class index 0..size-1, or (procedural dSprites
    subsets) the index into the full grid listed in ``meta['factors'][f]['indices']``, which is
    mapped to its position in that list. Any value outside the classes raises ValueError naming
    the factor.
    """
    columns = []
    for name, size in discrete_factors(meta).items():
        raw = factors[name].to_numpy()
        grid = meta["factors"][name].get("indices")
        if grid is not None:
            lookup = {int(v): i for i, v in enumerate(grid)}
            try:
                codes = np.fromiter((lookup[int(v)] for v in raw), dtype=np.int64, count=len(raw))
            except KeyError as err:
                raise ValueError(f"factor {name!r}: value {err.args[0]} is not in meta indices {grid}") from None
        else:
            codes = raw.astype(np.int64)
            if not np.array_equal(codes, raw):
                raise ValueError(f"factor {name!r}: non-integer class labels")
        if len(codes) and (codes.min() < 0 or codes.max() >= size):
            raise ValueError(f"factor {name!r}: labels outside 0..{size - 1}")
        columns.append(codes)
    return np.stack(columns, axis=1)


def classifier_columns(factor_names) -> tuple[str, ...]:
    """Logged terms of a classifier run (loss-log columns after ``step``)."""
    names = list(factor_names)
    return ("loss", *(f"ce_{f}" for f in names), *(f"accuracy_{f}" for f in names))


def classifier_step(
    model: ConvClassifier, optimizer: torch.optim.Optimizer, x: Tensor, labels: Tensor
) -> list[Tensor]:
    """One Adam update on (x (N, C, 64, 64), labels (N, n_heads)); returns the detached 0-d terms
    in :func:`classifier_columns` order (no host sync)."""
    logits = model(x)
    per_head = [torch.nn.functional.cross_entropy(head, labels[:, i]) for i, head in enumerate(logits)]
    loss = torch.stack(per_head).sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        acc = accuracies([head.detach() for head in logits], labels)
    return [loss.detach(), *(t.detach() for t in per_head), *acc.unbind()]
