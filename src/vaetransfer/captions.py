"""Report sections and captions of the paper's figures and tables, in the paper's terms.

``section(name)`` groups the Snakemake report by the paper's sections and ``label(name)`` names
each entry within one ("Figure 3", "Appendix B (a)"); ``caption(name, spec)`` is the reST caption
shown under the figure (the config entry ``spec`` adds which panels it shows).
Names are the figure file stems: fig1 ... fig8, fig6a/fig6b, appB_a/appB_b, appF ... appJ, table1,
appA.
"""

from __future__ import annotations

from typing import Any, Mapping

SECTIONS = {
    "metrics": "1. Similarity metrics (Section 2.3, Appendix F)",
    "dynamics": "2. Learning dynamics and objectives (Section 4.1, Appendices G-J)",
    "transfer": "3. Transfer across domains (Sections 4.2-4.3, Appendix B)",
    "downstream": "4. Downstream classification (Table 1, Appendix A)",
}
_SECTION_OF = {
    "fig1": "metrics", "appF": "metrics",
    "fig2": "dynamics", "fig3": "dynamics", "fig4": "dynamics", "appG": "dynamics", "appH": "dynamics",
    "appI": "dynamics", "appJ": "dynamics",
    "fig5a": "transfer", "fig5b": "transfer", "fig6": "transfer", "appB": "transfer", "fig7": "transfer",
    "fig8": "transfer",
    "table1": "downstream", "appA": "downstream",
}

_HEATMAP = (
    " Each cell is the similarity of a layer of the first model (rows, top to bottom in model order) "
    "and a layer of the second (columns), averaged over the seed pairs scored "
    "(``similarity.seed_pairing``; Eq. 6); colour scale 0 (dark) to 1 (light), seaborn's \"rocket\"."
)

TEXT = {
    "fig1": "**Figure 1.** CKA and Procrustes similarity of random matrices sharing 100 %, 80 %, 50 % or "
            "none of their features, as the number of examples grows (Section 2.3): why a fixed sample "
            "of examples is needed and how the two metrics differ.",
    "fig2": "**Figure 2.** Learning dynamics: each model's first checkpoint against its final one. The "
            "encoder is learned before the decoder: its layers are already close to their final state "
            "(bright encoder diagonal) while the decoder's are not." + _HEATMAP,
    "fig3": "**Figure 3.** Posterior collapse: a model whose latent dimensions collapsed (rows) against "
            "another model. The sampled representation of the collapsed model is dissimilar to every "
            "layer (a dark row): it carries noise, not information about the input." + _HEATMAP,
    "fig4": "**Figure 4.** Models trained with different objectives, final checkpoints. Encoders are "
            "similar across learning objectives; the mean, variance and sampled representations and "
            "the decoder are where objectives differ." + _HEATMAP,
    "fig5a": "**Figure 5a.** A VAE trained on the source domain against one trained on the target, both "
             "fed target data. The encoder is generic (similar across domains), the decoder "
             "domain-specific." + _HEATMAP,
    "fig5b": "**Figure 5b.** As Figure 5a after retraining the source VAE's mean and variance layers on "
             "the target: retraining the latent representations is not enough to make the decoder "
             "similar." + _HEATMAP,
    "fig6a": "**Figure 6a.** Progressive unfreezing, innermost decoder layers first, latent layers frozen: "
             "target examples, then reconstructions by the target-trained VAE, the source-trained VAE and "
             "source VAEs with 1, 2, ... decoder layers retrained on the target. More retrained decoder "
             "layers give better reconstructions.",
    "fig6b": "**Figure 6b.** As Figure 6a with the mean and variance layers retrained as well.",
    "appB_a": "**Appendix B (a).** Progressive unfreezing from the outermost decoder layer inwards, latent "
              "layers frozen (compare Figure 6a).",
    "appB_b": "**Appendix B (b).** Outermost-first unfreezing with the latent layers retrained.",
    "fig7": "**Figure 7.** Target examples (left of each pair) reconstructed by a VAE trained only on the "
            "source domain (right): what the source decoder can and cannot express.",
    "fig8": "**Figure 8.** A second source -> target pair reconstructed as in Figure 7.",
    "table1": "**Table 1.** Downstream classification of the target's ground-truth factors from the mean "
              "representation of a frozen encoder trained on the target or on the source (gradient "
              "boosting, test accuracy averaged over labels). A source encoder that nearly matches the "
              "target one is reusable.",
    "appA": "**Appendix A.** Table 1 per label: train and test accuracy of each factor.",
    "appF": "**Appendix F.** Procrustes similarity against CKA on the same comparisons: both heatmaps "
            "side by side and every layer pair's scores against each other, with their correlation. The "
            "conclusions do not depend on the metric." + _HEATMAP,
    "appG": "**Appendix G.** The fully-connected VAE (Table 8): the Section 4.1 heatmaps for a "
            "different architecture." + _HEATMAP,
    "appH": "**Appendix H.** The conv VAE's encoder against a classifier with the same convolutional "
            "trunk trained on the ground-truth factors: how much of the encoder a supervised model "
            "shares." + _HEATMAP,
    "appI": "**Appendix I.** Learning dynamics at several epochs: every checkpoint against the final one "
            "(same seed), showing when each layer settles." + _HEATMAP,
    "appJ": "**Appendix J.** Convergence curves of every objective: the training loss (window means, "
            "mean over seeds with the min-max band) against the step, per dataset and architecture.",
}


def figure_of(name: str) -> str:
    """The figure (config key) of a file stem: fig6a -> fig6, appB_b -> appB, fig4 -> fig4."""
    return name[:4] if name.startswith(("fig6", "appB")) else name


def section(name: str) -> str:
    """The report category (paper section) of a figure or table file stem."""
    return SECTIONS[_SECTION_OF[figure_of(name)]]


def label(name: str) -> str:
    """The paper's name of a figure or table file stem, its report subcategory: fig6a -> "Figure 6a"."""
    head = TEXT[name].split("**")[1]  # the caption's bold lead, e.g. "Figure 6a."
    return head.rstrip(".")


def caption(name: str, spec: Mapping[str, Any] | None = None) -> str:
    """The reST caption of a figure or table file stem; lists the configured panels of a heatmap."""
    from vaetransfer.panels import FIGURE_KINDS, figure_panels

    text = TEXT[name]
    if spec and name in FIGURE_KINDS:
        shown = "; ".join(p.title or p.describe() for p in figure_panels(name, spec))
        text += f"\n\nPanels: {shown}."
    elif spec and "term" in spec:
        text += f"\n\nDrawn: the ``{spec['term']}`` term instead of the loss."
    elif spec and "source" in spec:
        text += f"\n\nHere: {spec['source']} -> {spec['target']}."
    return text
