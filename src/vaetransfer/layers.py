"""The one ordered list of recorded representations ("15 layer activations plus the input").

Every stage (activation dumps, similarity scoring, figures) imports this tuple, so the order of
heatmap rows and columns, the keys of activation files and the `layer_x`/`layer_y` columns of
the similarity table can never drift apart.

Order and names follow the authors' heatmaps (spec reference.md §1.4): the input, the six encoder
outputs (e/5 is the flatten, kept although CKA(e/4, e/5) = 1), the mean and log-variance heads, the
sampled z, and the six decoder outputs computed from the sampled z (d/6 = logits).
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

ENCODER_LAYERS = LAYER_NAMES[1:10]
DECODER_LAYERS = LAYER_NAMES[10:]
