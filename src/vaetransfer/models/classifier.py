"""The classifier of Appendix H (spec reference.md §1.3): the conv encoder trunk plus one softmax head
per ground-truth factor, trained with the summed cross-entropy.

The authors' ``ConvolutionalClassifier``: ``classifier/1..6`` = conv32 k4, conv32 k4, conv64 k2,
conv64 k2, flatten, Dense 256 ReLU (the conv VAE encoder's trunk, same padding), then a Dense
softmax head ``classifier/output_i`` per factor with as many units as the factor has values.
Shapes: c/1..c/6 as the conv VAE's e/1..e/6 (:mod:`vaetransfer.models.conv`), then
``heads``, one Linear(256, factor_sizes[i]) per factor, giving (N, factor_sizes[i]) logits.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaetransfer.layers import CLASSIFIER_LAYER_NAMES
from vaetransfer.models.common import NamedLayers, conv_trunk


class ConvClassifier(NamedLayers):
    """Appendix H classifier; ``factor_sizes``: number of classes of each head (one per factor)."""

    ARCHITECTURE = "classifier"
    LAYERS = CLASSIFIER_LAYER_NAMES
    WEIGHTED = ("c/1", "c/2", "c/3", "c/4", "c/6", "heads")

    def __init__(self, channels: int = 1, factor_sizes: Sequence[int] = (3,)) -> None:
        super().__init__()
        sizes = [int(s) for s in factor_sizes]
        if not sizes or min(sizes) < 2:
            raise ValueError(f"factor_sizes must list >= 1 factor with >= 2 classes each, got {list(factor_sizes)}")
        self.channels = int(channels)
        self.factor_sizes = sizes
        c = self.channels
        self.c1, self.c2, self.c3, self.c4 = conv_trunk(c)
        self.c6 = nn.Linear(1024, 256)
        self.heads = nn.ModuleList(nn.Linear(256, size) for size in sizes)
        self.reset_parameters()

    def model_args(self) -> dict:
        """Constructor kwargs, stored in checkpoints so ``ConvClassifier(**args)`` rebuilds it."""
        return {"channels": self.channels, "factor_sizes": list(self.factor_sizes)}

    def _trunk(self, x: Tensor) -> Iterator[tuple[str, Tensor]]:
        h = x
        for name in ("c/1", "c/2", "c/3", "c/4"):
            h = F.relu(getattr(self, name.replace("/", ""))(h))
            yield name, h
        h = h.flatten(1)
        yield "c/5", h
        yield "c/6", F.relu(self.c6(h))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """x (N, C, 64, 64) -> one logits tensor (N, factor_sizes[i]) per head (softmax not applied)."""
        *_, (_, h) = self._trunk(x)
        return [head(h) for head in self.heads]

    def activations(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """input and c/1..c/6 (CLASSIFIER_LAYER_NAMES), in order; ``generator`` is unused (no noise)."""
        acts: dict[str, Tensor] = {"input": x}
        acts.update(self._trunk(x))
        return acts


def summed_cross_entropy(logits: Sequence[Tensor], labels: Tensor) -> Tensor:
    """Σ_i CE(softmax(logits_i), y_i): the sum over heads of the batch-mean sparse categorical
    cross-entropy (the authors' loss, §1.3). logits[i]: (N, K_i); labels: (N, n_heads) int64."""
    if labels.ndim != 2 or labels.shape[1] != len(logits):
        raise ValueError(f"labels must be (N, {len(logits)}), got {tuple(labels.shape)}")
    return sum(F.cross_entropy(head, labels[:, i]) for i, head in enumerate(logits))


def accuracies(logits: Sequence[Tensor], labels: Tensor) -> Tensor:
    """Per-head accuracy (n_heads,) of argmax predictions against ``labels`` (N, n_heads)."""
    return torch.stack([(head.argmax(1) == labels[:, i]).float().mean() for i, head in enumerate(logits)])
