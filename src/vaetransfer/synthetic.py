"""Figure 1 of the paper: CKA and Procrustes on random matrices sharing some of their features.

Section 2.3 of Bonheme & Grzes (arXiv 2304.10767) motivates using both metrics with a toy study
(the authors' ``misc/procrustes_normalisation.py``; spec reference.md §5.4): a reference matrix A
is compared with three others as the number of examples n grows, and the scores of CKA and
Procrustes similarity are plotted against n. CKA of unrelated matrices falls towards 0 as n grows,
while Procrustes stays higher; both keep the order of the true overlap (80 % > 50 % > 0 %).

Construction (all entries i.i.d. uniform on [0, 1), 50 features, float64). Each block of k
features is drawn as ``RandomState(seed).random_sample((k, n)).T``, i.e. feature by feature, as the
authors did, so that a seed's first k features are the same whatever total width is drawn:

- A: 50 features from seed 0.
- B: 50 features from seed 42, independent of A (0 % shared).
- C: A's first 40 columns (bit-identical) followed by 10 columns from seed 1 (80 % shared).
- D: A's first 25 columns (bit-identical) followed by 25 columns from seed 1 (50 % shared).

The matrices are drawn afresh for every n (as in the authors' script), so A at n=90 does not
extend A at n=50. The authors computed CKA on the Procrustes-normalised matrices (centred, unit
Frobenius norm); linear CKA is invariant to centring and isotropic scaling, so calling
:func:`vaetransfer.similarity.linear_cka` on the raw matrices gives the same value.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from vaetransfer.similarity import linear_cka, procrustes_similarity  # noqa: E402

N_FEATURES = 50
SEED_A, SEED_B, SEED_FRESH = 0, 42, 1
# comparison -> (partner matrix, number of A's features it shares)
COMPARISONS: dict[str, tuple[str, int]] = {"A-B": ("B", 0), "A-C": ("C", 40), "A-D": ("D", 25)}
METRICS = {"cka": linear_cka, "procrustes": procrustes_similarity}
METRIC_LABELS = {"cka": "CKA", "procrustes": "Procrustes"}
DEFAULT_NS = range(50, 1001, 40)  # 50, 90, ..., 970 (24 values), the authors' grid


def _uniform_features(n: int, n_features: int, seed: int) -> np.ndarray:
    """(n, n_features) uniform [0, 1) matrix, drawn feature by feature from ``RandomState(seed)``."""
    return np.random.RandomState(seed).random_sample((n_features, n)).T


def _sharing(A: np.ndarray, n_shared: int, seed: int) -> np.ndarray:
    """A's first `n_shared` columns followed by fresh uniform columns from `seed` (same width as A)."""
    n, d = A.shape
    fresh = _uniform_features(n, d - n_shared, seed)
    return np.concatenate([A[:, :n_shared], fresh], axis=1)


def toy_matrices(n: int, n_features: int = N_FEATURES) -> dict[str, np.ndarray]:
    """The four toy matrices of Section 2.3 for `n` examples: {"A", "B", "C", "D"}, each (n, 50).

    See the module docstring for the construction; C shares 80 % and D 50 % of A's columns, B none.
    """
    if n < 2:
        raise ValueError(f"need at least 2 examples, got n={n}")
    A = _uniform_features(n, n_features, SEED_A)
    mats = {"A": A, "B": _uniform_features(n, n_features, SEED_B)}
    for partner, n_shared in [COMPARISONS["A-C"], COMPARISONS["A-D"]]:
        shared = round(n_shared * n_features / N_FEATURES)
        mats[partner] = _sharing(A, shared, SEED_FRESH)
    return mats


def figure1_table(ns=DEFAULT_NS) -> pd.DataFrame:
    """Scores of A against B, C and D for every n in `ns`, for CKA and Procrustes.

    Long format, one row per (n, comparison, metric), columns:
    n (int), comparison ("A-B", "A-C", "A-D"), shared_fraction (0.0, 0.8, 0.5),
    metric ("cka", "procrustes"), score (float in [0, 1]).
    """
    rows = []
    for n in ns:
        mats = toy_matrices(int(n))
        for comparison, (partner, n_shared) in COMPARISONS.items():
            for metric, fn in METRICS.items():
                rows.append({
                    "n": int(n),
                    "comparison": comparison,
                    "shared_fraction": n_shared / N_FEATURES,
                    "metric": metric,
                    "score": float(fn(mats["A"], mats[partner])),
                })
    return pd.DataFrame(rows, columns=["n", "comparison", "shared_fraction", "metric", "score"])


def plot_figure1(table: pd.DataFrame):
    """Three panels (A-B, A-C, A-D), each CKA (solid) and Procrustes (dashed) vs n, y in [0, 1].

    `table` is :func:`figure1_table`'s output; returns the matplotlib Figure.
    """
    sns.set_theme(style="whitegrid", font_scale=1.1)
    comparisons = [c for c in COMPARISONS if c in set(table["comparison"])]
    if not comparisons:
        raise ValueError("the table holds none of the comparisons " + ", ".join(COMPARISONS))
    fig, axes = plt.subplots(1, len(comparisons), figsize=(5 * len(comparisons), 4.2), sharey=True,
                             squeeze=False)
    palette = sns.color_palette(n_colors=len(METRICS))
    for ax, comparison in zip(axes[0], comparisons):
        rows = table[table["comparison"] == comparison]
        for (metric, label), color, style in zip(METRIC_LABELS.items(), palette, ["-", "--"]):
            curve = rows[rows["metric"] == metric].sort_values("n")
            ax.plot(curve["n"], curve["score"], style, color=color, label=label, linewidth=2)
        shared = rows["shared_fraction"].iloc[0]
        first, second = comparison.split("-")
        ax.set_title(f"{first} vs {second} ({shared:.0%} of features shared)")
        ax.set_xlabel("number of examples n")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("similarity")
    axes[0][0].legend(loc="best")
    fig.tight_layout()
    return fig
