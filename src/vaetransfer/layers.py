"""The ordered lists of recorded representations, one per architecture (spec reference.md §1.4).

Every stage (models, activation dumps, similarity scoring, figures) reads these tuples, so the
order of heatmap rows and columns, the keys of activation files and the `layer_x`/`layer_y`
columns of the similarity table can never drift apart. The keys of :data:`ARCHITECTURE_LAYERS`
are the architecture keys of configs, wildcards, file names and tables.

- ``conv`` ("15 layer activations plus the input", the authors' heatmaps): the input, the six
  encoder outputs (e/5 is the flatten, kept although CKA(e/4, e/5) = 1), the mean and
  log-variance heads, the sampled z, and the six decoder outputs computed from the sampled z
  (d/6 = logits).
- ``fc`` (paper Table 8 as coded, §1.2): the input, e/1 (the flatten, kept as the authors' FC
  heatmap index keeps it), e/2, e/3 (Dense 1200 ReLU), mean, log_var, sampled, d/1..d/3 (Dense 1200
  tanh) and d/4 (the logits, kept like the conv decoder's d/6, which the authors' hard-coded FC
  index omits).
- ``classifier`` (Appendix H, §1.3): the input and the conv encoder trunk c/1..c/6; the softmax
  heads are outputs, not representations, and are not recorded (the authors drop them too).
"""

LAYER_NAMES: tuple[str, ...] = (
    "input",
    "e/1",
    "e/2",
    "e/3",
    "e/4",
    "e/5",
    "e/6",
    "mean",
    "log_var",
    "sampled",
    "d/1",
    "d/2",
    "d/3",
    "d/4",
    "d/5",
    "d/6",
)

FC_LAYER_NAMES: tuple[str, ...] = (
    "input", "e/1", "e/2", "e/3", "mean", "log_var", "sampled", "d/1", "d/2", "d/3", "d/4",
)

CLASSIFIER_LAYER_NAMES: tuple[str, ...] = ("input", "c/1", "c/2", "c/3", "c/4", "c/5", "c/6")

ARCHITECTURE_LAYERS: dict[str, tuple[str, ...]] = {
    "conv": LAYER_NAMES,
    "fc": FC_LAYER_NAMES,
    "classifier": CLASSIFIER_LAYER_NAMES,
}

ENCODER_LAYERS = LAYER_NAMES[1:10]
DECODER_LAYERS = LAYER_NAMES[10:]


def layer_names(architecture: str) -> tuple[str, ...]:
    """The recorded representations of ``architecture``, in order; KeyError names the valid keys."""
    try:
        return ARCHITECTURE_LAYERS[architecture]
    except KeyError:
        raise KeyError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURE_LAYERS)}") from None


def all_layer_names() -> tuple[str, ...]:
    """Every layer name of every architecture, each once, conv first then in registry order."""
    return tuple(dict.fromkeys(n for names in ARCHITECTURE_LAYERS.values() for n in names))
