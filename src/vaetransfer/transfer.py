"""The transfer experiments of Sections 4.2-4.3 (spec reference.md §6.1): which layers a transfer run
re-initialises and retrains on the target, everything else frozen at the source model's weights.

A *variant* names that set; variant names are the ``{variant}`` wildcard and folder of
``results/transfer/<source>_to_<target>/<variant>/seed<seed>/``:

- ``latents``: the mean and log-variance layers (Fig. 5b, "after retraining the mean and sampled
  representations"; the authors' config also re-initialised d/1 by default, which the text does
  not mention: we follow the text, see config/README.md);
- ``inner<k>``: the k innermost weight-bearing decoder layers d/1..d/k (Fig. 6, k = 1..6);
- ``outer<k>``: the k outermost ones d/(7-k)..d/6 (Appendix B);
- a ``_latents`` suffix retrains the latent layers too (Fig. 6b; without it, Fig. 6a).

k = 0 is the source model itself (latents frozen) or ``latents`` (retrained).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

LATENT_LAYERS = ("mean", "log_var")
DECODER_LAYERS = ("d/1", "d/2", "d/3", "d/4", "d/5", "d/6")  # the conv VAE's weight-bearing decoder
ORDERS = ("inner", "outer")
VARIANT_PATTERN = r"latents|(?:inner|outer)[1-6](?:_latents)?"


def variant_layers(variant: str) -> list[str]:
    """The layers a transfer variant re-initialises and trains; ValueError for an unknown name."""
    match = re.fullmatch(r"(inner|outer)([1-6])(_latents)?|latents", variant)
    if match is None:
        raise ValueError(f"unknown transfer variant {variant!r}; expected {VARIANT_PATTERN}")
    if variant == "latents":
        return list(LATENT_LAYERS)
    order, k, latents = match.group(1), int(match.group(2)), bool(match.group(3))
    decoder = list(DECODER_LAYERS[:k] if order == "inner" else DECODER_LAYERS[-k:])
    return (list(LATENT_LAYERS) if latents else []) + decoder


def variants(config: Mapping[str, Any]) -> list[str]:
    """The variants of `transfer` in config: ``latents`` when `transfer.latents`, then for each
    unfreezing order, latent setting and level, ``<order><level>[_latents]``."""
    spec = config["transfer"]
    names = ["latents"] if spec["latents"] else []
    unfreezing = spec["unfreezing"]
    for order in unfreezing["orders"]:
        for latents in unfreezing["latents"]:
            suffix = "_latents" if latents == "retrained" else ""
            names.extend(f"{order}{k}{suffix}" for k in unfreezing["levels"])
    return list(dict.fromkeys(names))


def parse_variant(variant: str) -> dict[str, Any]:
    """``{"order": inner|outer|None, "level": k, "latents": frozen|retrained}`` of a variant name."""
    variant_layers(variant)  # validates
    if variant == "latents":
        return {"order": None, "level": 0, "latents": "retrained"}
    return {"order": variant[:5], "level": int(variant[5]), "latents": "retrained" if variant.endswith("_latents") else "frozen"}


def unfreezing_study(data_dir, models: Mapping[str, str], seed: int, n_examples: int,
                     fraction: float = 0.1, device: str = "cpu"):
    """Held-out reconstruction loss of every model of one source -> target pair (Fig. 6's numbers).

    ``models``: ``{"target": final checkpoint of the target-trained VAE, "source": the
    source-trained one, <variant>: its transfer checkpoint, ...}``. The loss (Bernoulli, summed
    over pixels, mean over examples; sampled z seeded by ``seed``) is averaged over ``n_examples``
    examples drawn from the target's validation split of ``seed``, which none of these models
    trained on (the target VAE and the transfer runs of that seed split the target the same way).
    Returns one row per model: model, order, level, latents, retrained layers, loss, n_examples.
    """
    import pandas as pd

    from vaetransfer.data.store import load_images, load_meta
    from vaetransfer.reconstruction import heldout_indices, reconstruction_loss
    from vaetransfer.train import load_checkpoint

    images, meta = load_images(data_dir), load_meta(data_dir)
    indices = heldout_indices(meta, seed, fraction, limit=n_examples)
    rows = []
    for name, path in models.items():
        model, _ = load_checkpoint(path, device=device)
        if name in ("target", "source"):
            info = {"order": None, "level": 0, "latents": "trained" if name == "target" else "frozen"}
            layers = "all" if name == "target" else ""
        else:
            info, layers = parse_variant(name), ",".join(variant_layers(name))
        loss = reconstruction_loss(model, images, indices, seed=seed, device=device)
        rows.append({"model": name, **info, "retrained": layers, "heldout_loss": loss, "n_examples": len(indices)})
    return pd.DataFrame(rows)


def unfreezing_grids(data_dir, models: Mapping[str, str], seed: int = 0, fraction: float = 0.1,
                     device: str = "cpu", count: int = 10) -> dict[str, Any]:
    """Fig. 6 / Appendix B grids, one per (order, latents) present in ``models``: ``count`` target
    examples (the first of the seed-0 training split, as the authors), then the target-trained
    and source-trained reconstructions and one column per level. Returns {"<order>_<latents>": Figure}."""
    from vaetransfer.reconstruction import columns_grid, reconstruct, target_examples
    from vaetransfer.train import load_checkpoint

    _, examples = target_examples(data_dir, count, seed=0, fraction=fraction)

    def recon(path):
        return reconstruct(load_checkpoint(path, device=device)[0], examples, seed=seed, device=device)

    base = [("target-trained", recon(models["target"])), ("source-trained", recon(models["source"]))]
    parsed = {name: parse_variant(name) for name in models if name not in ("target", "source")}
    figures = {}
    for order in ORDERS:
        for latents in ("frozen", "retrained"):
            levels = sorted((info["level"], name) for name, info in parsed.items()
                            if info["order"] == order and info["latents"] == latents)
            if not levels:
                continue
            first = [("+latents", recon(models["latents"]))] if latents == "retrained" and "latents" in models else []
            columns = base + first + [(f"+{k} {order}", recon(models[name])) for k, name in levels]
            figures[f"{order}_{latents}"] = columns_grid(examples, columns)
    return figures
