"""Downstream classification of the mean representation (paper Table 1, Appendix A; spec
reference.md §6.3).

A frozen VAE encoder - trained on the *target* dataset (role ``target``) or on the *source*
dataset (role ``source``) - maps the target dataset's images to their 10-d mean ``z_mean``. One
``GradientBoostingClassifier(n_estimators=100)`` per ground-truth label (discrete factor) is fit
on the target's training split and scored (accuracy) on its held-out split. Appendix A is the
per-label table; Table 1 is, per (role, source, target, model), the unweighted mean of the
per-label test accuracies (dSprites 0.72, 0.53, 0.11, 0.31, 0.31 -> 0.396; CelebA 0.83 is the mean
over all 40 attributes).

Sample sizes (the authors' scripts are ambiguous, spec §6.3): the split is the target dataset's
seed-0 90/10 split (:func:`vaetransfer.data.store.split_indices`, as their ``DataSampler(seed=0)``).
The default (``SAMPLE_PRESETS["full"]``) is the paper-time code (commit 929fffa): the *whole*
splits, e.g. dSprites 663,552 train / 73,728 test. ``SAMPLE_PRESETS["jan-mar-2023"]`` is their
earlier code: 156 batches of 64 = 9,984 train and 78 x 64 = 4,992 test examples, drawn here as a
random subset (``subsample_seed``) of each split. Differences from the authors, recorded in every
row: the classifier gets ``random_state`` (they had none), and the last incomplete batch of 64 is
kept (their sampler dropped it: at most 63 examples per split). For model seeds other than 0 the
seed-0 test split overlaps the encoder's own training data, as in the authors' code.

Jobs: :func:`encode_target` (one per checkpoint x target dataset) caches the features;
:func:`run_label` (one per label, independent) writes a one-row Parquet; :func:`collect` gathers
them into the Appendix A and Table 1 Parquet + Markdown files.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from vaetransfer.classify import discrete_factors, factor_labels
from vaetransfer.data.store import load_factors, load_meta, load_images, split_indices
from vaetransfer.io import atomic_path, save_npz, write_parquet
from vaetransfer.models import images_to_tensor

#: The discrete ground-truth factors classified per dataset kind (spec datasets.md §0): what the
#: store's factors.parquet holds for each real dataset and each generator of the same kind. CelebA:
#: all 40 attributes (Table 1's 0.83 is their mean; Appendix A shows 8 of them).
LABELS: dict[str, tuple[str, ...]] = {
    "dsprites": ("shape", "scale", "orientation", "pos_x", "pos_y"),
    "cars3d": ("elevation", "azimuth", "object"),
    "smallnorb": ("category", "instance", "elevation", "azimuth", "lighting"),
    "symsol": ("shape",),
    "celeba": (
        "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
        "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
        "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
        "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
        "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
        "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
    ),
}
ROLES = ("target", "source")
#: (max_train, max_test) per named sample scheme; None = the whole split.
SAMPLE_PRESETS: dict[str, tuple[int | None, int | None]] = {
    "full": (None, None),
    "jan-mar-2023": (156 * 64, 78 * 64),
}
#: Identity of one Table 1 entry (model + evaluation); a per-label row adds ``label``.
KEY = ("role", "source_dataset", "target_dataset", "architecture", "objective", "hparam", "seed", "step")
ROW_COLUMNS = ("label", "n_classes", "n_train", "n_test", "train_accuracy", "test_accuracy")
_MD_PER_LABEL = ("role", "source_dataset", "target_dataset", "seed", "label", "n_classes",
                 "n_train", "n_test", "train_accuracy", "test_accuracy")
_MD_TABLE1 = ("role", "source_dataset", "target_dataset", "seed", "n_labels", "n_train", "n_test",
              "train_accuracy", "test_accuracy")


@torch.no_grad()
def mean_representation(model, images: np.ndarray, indices: Sequence[int], batch_size: int = 512,
                        device: str | torch.device = "cpu") -> np.ndarray:
    """float32 (len(indices), latent_dim): ``model.encode(x)[0]`` (z_mean) of ``images[indices]``,
    row i for ``indices[i]``. Eval mode, no gradients, batches of ``batch_size`` read in sorted
    index order (forward through a memory map) and sent to ``device`` as uint8."""
    if not hasattr(model, "encode"):
        raise TypeError(f"{type(model).__name__} has no encode(); the mean representation needs a VAE")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    indices = np.asarray(indices, dtype=np.int64)
    order = np.argsort(indices, kind="stable")
    model.eval()
    out = np.empty((len(indices), int(model.latent_dim)), dtype=np.float32)
    for start in range(0, len(indices), batch_size):
        rows = order[start:start + batch_size]
        mean, _ = model.encode(images_to_tensor(images[indices[rows]], device))
        out[rows] = mean.float().cpu().numpy()
    return out


def split_for_downstream(meta: Mapping, seed: int = 0, fraction: float = 0.1, max_train: int | None = None,
                         max_test: int | None = None, rng_seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train, test, record): the target's ``split_indices(meta['n'], seed, fraction)`` split,
    optionally reduced to random subsets of at most ``max_train`` / ``max_test`` examples
    (``np.random.default_rng(rng_seed)``, sorted). ``record`` documents the sizes used."""
    n_total = int(meta["n"])
    train, test = split_indices(n_total, seed, fraction)
    rng = np.random.default_rng(rng_seed)
    sizes = {}
    for name, cap in (("train", max_train), ("test", max_test)):
        if cap is not None and (isinstance(cap, bool) or int(cap) < 1):
            raise ValueError(f"max_{name} must be a positive int or None, got {cap!r}")
        idx = train if name == "train" else test
        sizes[name] = len(idx)
        if cap is not None and int(cap) < len(idx):
            idx = np.sort(idx[rng.choice(len(idx), size=int(cap), replace=False)])
        if name == "train":
            train = idx
        else:
            test = idx
    scheme = next((k for k, v in SAMPLE_PRESETS.items() if v == (max_train, max_test)), "custom")
    record = {
        "sample_scheme": scheme, "split_seed": int(seed), "test_fraction": float(fraction),
        "n_total": n_total, "n_train_split": sizes["train"], "n_test_split": sizes["test"],
        "max_train": -1 if max_train is None else int(max_train),
        "max_test": -1 if max_test is None else int(max_test),
        "subsample_seed": int(rng_seed), "n_train": int(len(train)), "n_test": int(len(test)),
    }
    return train.astype(np.int64), test.astype(np.int64), record


def evaluate_label(features_train: np.ndarray, y_train: np.ndarray, features_test: np.ndarray,
                   y_test: np.ndarray, n_estimators: int = 100, random_state: int | None = 0) -> dict:
    """Fit ``GradientBoostingClassifier(n_estimators, random_state)`` (other sklearn defaults, as
    the authors) on one label; train/test accuracy, sample sizes and number of training classes."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import accuracy_score

    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if len(features_train) != len(y_train) or len(features_test) != len(y_test):
        raise ValueError("features and labels differ in length")
    n_classes = len(np.unique(y_train))
    if n_classes < 2:
        raise ValueError(f"the training labels hold {n_classes} class; a classifier needs >= 2")
    clf = GradientBoostingClassifier(n_estimators=n_estimators, random_state=random_state)
    clf.fit(features_train, y_train)
    return {
        "train_accuracy": float(accuracy_score(y_train, clf.predict(features_train))),
        "test_accuracy": float(accuracy_score(y_test, clf.predict(features_test))),
        "n_train": int(len(y_train)), "n_test": int(len(y_test)), "n_classes": int(n_classes),
    }


def accuracy_table(rows: Iterable[Mapping]) -> pd.DataFrame:
    """Appendix A: one row per (KEY..., label), sorted; ValueError on missing columns or duplicates."""
    frame = pd.DataFrame(list(rows))
    missing = [c for c in ("role", "source_dataset", "target_dataset", "seed", *ROW_COLUMNS) if c not in frame]
    if missing:
        raise ValueError(f"accuracy rows lack column(s) {missing}")
    bad = sorted(set(frame["role"]) - set(ROLES))
    if bad:
        raise ValueError(f"unknown role(s) {bad}; valid: {list(ROLES)}")
    ident = [c for c in KEY if c in frame] + ["label"]
    if frame.duplicated(ident).any():
        raise ValueError(f"duplicate rows for {frame[frame.duplicated(ident)][ident].to_dict('records')}")
    return frame.sort_values(ident, kind="stable").reset_index(drop=True)


def table1(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 1: per (KEY...), the unweighted mean over labels of train/test accuracy, with
    ``n_labels`` and the (per-label constant) ``n_train``/``n_test``."""
    keys = [c for c in KEY if c in frame]
    out = frame.groupby(keys, sort=True, dropna=False).agg(
        n_labels=("label", "nunique"), n_train=("n_train", "max"), n_test=("n_test", "max"),
        train_accuracy=("train_accuracy", "mean"), test_accuracy=("test_accuracy", "mean"))
    return out.reset_index()


def _cell(value, float_format: str) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else float_format.format(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(frame: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    """A GitHub pipe table: header, separator (numeric columns right-aligned), one line per row.
    Hand-rolled: pandas' ``DataFrame.to_markdown`` needs the optional ``tabulate`` package."""
    columns = [str(c) for c in frame.columns]
    align = ["---:" if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
             else "---" for c in frame.columns]
    lines = ["| " + " | ".join(_cell(c, float_format) for c in columns) + " |", "| " + " | ".join(align) + " |"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, float_format) for v in row) + " |")
    return "\n".join(lines) + "\n"


def encode_target(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, out_path: str | os.PathLike,
                  target_dataset: str | None = None, device: str = "cpu", batch_size: int = 512,
                  split_seed: int = 0, test_fraction: float = 0.1, max_train: int | None = None,
                  max_test: int | None = None, subsample_seed: int = 0) -> dict:
    """Encode the target's downstream train/test examples with a checkpoint's frozen encoder and
    write ``out_path`` (.npz: features_train, features_test, train_indices, test_indices, info);
    ``info`` (also returned) identifies the model, the target and the sample sizes."""
    from vaetransfer.train import load_checkpoint

    model, ckpt = load_checkpoint(checkpoint, device=device)
    meta = load_meta(data_dir)
    if meta["channels"] != ckpt["model_args"].get("channels", meta["channels"]):
        raise ValueError(f"{checkpoint} expects {ckpt['model_args']['channels']}-channel images but "
                         f"{data_dir} has {meta['channels']}")
    train, test, record = split_for_downstream(meta, split_seed, test_fraction, max_train, max_test,
                                               subsample_seed)
    images = load_images(data_dir)
    cfg = {"architecture": "conv", **ckpt["config"]}
    info = {
        "source_dataset": str(cfg["dataset"]), "target_dataset": target_dataset or str(meta["name"]),
        "architecture": str(cfg["architecture"]), "objective": str(cfg["objective"]),
        "hparam": float(cfg["hparam"]), "seed": int(cfg["seed"]), "step": int(ckpt["step"]),
        "checkpoint": str(checkpoint), **record,
    }
    save_npz(out_path, {
        "features_train": mean_representation(model, images, train, batch_size, device),
        "features_test": mean_representation(model, images, test, batch_size, device),
        "train_indices": train, "test_indices": test, "info": np.array(json.dumps(info)),
    })
    return info


def run_label(features: str | os.PathLike, data_dir: str | os.PathLike, label: str, role: str,
              out_path: str | os.PathLike, n_estimators: int = 100, random_state: int | None = 0) -> dict:
    """One independent job: classify ``label`` of the target dataset ``data_dir`` from the
    :func:`encode_target` features and write a one-row Parquet (atomically); returns the row."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {list(ROLES)}, got {role!r}")
    with np.load(features, allow_pickle=False) as arrays:
        data = {k: arrays[k] for k in arrays.files}
    info = json.loads(str(data.pop("info")))
    same = info["source_dataset"] == info["target_dataset"]
    if same != (role == "target"):
        raise ValueError(f"role {role!r} but the encoder was trained on {info['source_dataset']!r} and "
                         f"evaluated on {info['target_dataset']!r}")
    meta = load_meta(data_dir)
    labels = discrete_factors(meta)  # ValueError for a dataset without discrete labels
    if label not in labels:
        raise ValueError(f"{label!r} is not a discrete label of {meta['name']!r}; valid: {list(labels)}")
    if int(meta["n"]) != info["n_total"]:
        raise ValueError(f"{features} was encoded from {info['n_total']} examples but {data_dir} has {meta['n']}")
    y = factor_labels(load_factors(data_dir), meta)[:, list(labels).index(label)]
    scores = evaluate_label(data["features_train"], y[data["train_indices"]], data["features_test"],
                            y[data["test_indices"]], n_estimators, random_state)
    row = {"role": role, **{k: info[k] for k in KEY if k != "role"}, "label": label, **scores,
           "classifier": "GradientBoostingClassifier", "n_estimators": int(n_estimators),
           "random_state": -1 if random_state is None else int(random_state),
           **{k: info[k] for k in ("sample_scheme", "split_seed", "test_fraction", "n_total", "n_train_split",
                                   "n_test_split", "max_train", "max_test", "subsample_seed", "checkpoint")}}
    write_parquet(out_path, pd.DataFrame([row]))
    return row


def _write_markdown(path: str | os.PathLike, frame: pd.DataFrame, columns: Sequence[str], title: str) -> None:
    text = f"# {title}\n\n" + to_markdown(frame[[c for c in columns if c in frame]])
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def collect(paths: Iterable[str | os.PathLike], per_label_parquet=None, table1_parquet=None,
            per_label_md=None, table1_md=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read :func:`run_label` rows; return (Appendix A per-label frame, Table 1 frame) and write
    each output path given (Parquet: all columns; Markdown: the columns a reader needs)."""
    frames = [pd.read_parquet(p, engine="pyarrow") for p in paths]
    if not frames:
        raise ValueError("no per-label results to collect")
    per_label = accuracy_table(pd.concat(frames, ignore_index=True).to_dict("records"))
    summary = table1(per_label)
    if per_label_parquet:
        write_parquet(per_label_parquet, per_label)
    if table1_parquet:
        write_parquet(table1_parquet, summary)
    if per_label_md:
        _write_markdown(per_label_md, per_label, _MD_PER_LABEL,
                        "Appendix A: per-label downstream accuracy (gradient boosting on z_mean)")
    if table1_md:
        _write_markdown(table1_md, summary, _MD_TABLE1,
                        "Table 1: downstream accuracy, unweighted mean over labels")
    return per_label, summary
