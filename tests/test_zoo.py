"""The model zoo beyond the conv VAE: the FC VAE (Table 8 as coded), the Appendix H classifier,
the architecture registry, and training each through the one loop (spec reference.md §1-§3)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from vaetransfer.classify import CLASSIFIER_OBJECTIVES, classifier_columns, discrete_factors, factor_labels
from vaetransfer.layers import ARCHITECTURE_LAYERS, CLASSIFIER_LAYER_NAMES, FC_LAYER_NAMES, LAYER_NAMES
from vaetransfer.models import (
    ARCHITECTURES, ConvClassifier, ConvVAE, FCVAE, build_model, is_vae, summed_cross_entropy,
)
from vaetransfer.train import TrainConfig, load_checkpoint, train

from .test_train import random_squares


def test_registry_keys_map_to_the_intended_classes_and_layer_lists():
    assert ARCHITECTURES == {"conv": ConvVAE, "fc": FCVAE, "classifier": ConvClassifier}
    assert set(ARCHITECTURE_LAYERS) == set(ARCHITECTURES)
    for key, cls in ARCHITECTURES.items():
        assert cls.ARCHITECTURE == key and cls.LAYERS == ARCHITECTURE_LAYERS[key]
    assert ARCHITECTURE_LAYERS["conv"] == LAYER_NAMES
    assert [k for k in ARCHITECTURES if is_vae(k)] == ["conv", "fc"]
    with pytest.raises(KeyError, match="unknown architecture 'mlp'"):
        build_model("mlp")


@pytest.mark.parametrize("c", [1, 3])
def test_fc_vae_shapes_layer_names_and_parameter_count(c):
    model = FCVAE(channels=c)
    acts = model.activations(torch.rand(3, c, 64, 64), generator=torch.Generator().manual_seed(0))
    assert tuple(acts) == FC_LAYER_NAMES
    pixels = 4096 * c
    widths = {n: a.reshape(3, -1).shape[1] for n, a in acts.items()}
    assert widths == {"input": pixels, "e/1": pixels, "e/2": 1200, "e/3": 1200, "mean": 10, "log_var": 10,
                      "sampled": 10, "d/1": 1200, "d/2": 1200, "d/3": 1200, "d/4": pixels}
    # Table 8 as coded: 4096c-1200-1200-(10, 10) encoder, 10-1200-1200-1200-4096c decoder.
    expected = (pixels * 1200 + 1200) + (1200 * 1200 + 1200) + 2 * (1200 * 10 + 10) \
        + (10 * 1200 + 1200) + 2 * (1200 * 1200 + 1200) + (1200 * pixels + pixels)
    assert sum(p.numel() for p in model.parameters()) == expected
    # the decoder's hidden layers are tanh (bounded), its output linear logits
    assert all(acts[n].abs().max() <= 1 for n in ("d/1", "d/2", "d/3"))
    assert (acts["e/2"] >= 0).all() and (acts["e/1"] == acts["input"].flatten(1)).all()


def test_fc_vae_forward_agrees_with_activations():
    model = FCVAE()
    x = torch.rand(4, 1, 64, 64)
    out = model(x, generator=torch.Generator().manual_seed(3))
    acts = model.activations(x, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.logits, acts["d/4"].view(4, 1, 64, 64))
    torch.testing.assert_close(out.z, acts["sampled"])


def test_fc_weights_are_keras_like_and_resettable_by_name():
    model = FCVAE()
    assert all((m.bias == 0).all() for m in model.layer_modules().values())
    bound = math.sqrt(6 / (1200 + 1200))
    assert model.d2.weight.abs().max() <= bound and model.d2.weight.std() > bound / 3
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_parameters(["d/4"], generator=torch.Generator().manual_seed(0))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"d4.weight"}  # zero bias stays zero


def test_classifier_trunk_matches_the_conv_encoder_and_heads_follow_factors():
    model = ConvClassifier(channels=1, factor_sizes=[3, 6, 40])
    vae = ConvVAE(channels=1)
    x = torch.rand(2, 1, 64, 64)
    acts = model.activations(x)
    assert tuple(acts) == CLASSIFIER_LAYER_NAMES
    vae_acts = vae.activations(x, generator=torch.Generator().manual_seed(0))
    for k in range(1, 7):  # same shapes as e/1..e/6
        assert acts[f"c/{k}"].shape == vae_acts[f"e/{k}"].shape
    assert [tuple(h.shape) for h in model(x)] == [(2, 3), (2, 6), (2, 40)]
    assert model.model_args() == {"channels": 1, "factor_sizes": [3, 6, 40]}
    model.reset_parameters(["heads"], generator=torch.Generator().manual_seed(0))  # a ModuleList resets too
    with pytest.raises(ValueError, match="factor_sizes"):
        ConvClassifier(factor_sizes=[1])


def test_summed_cross_entropy_closed_form():
    # Uniform logits: each head's CE is log K_i, so the sum is sum_i log K_i.
    logits = [torch.zeros(5, 3), torch.zeros(5, 40)]
    labels = torch.tensor([[0, 1], [2, 39], [1, 0], [0, 5], [2, 7]])
    assert summed_cross_entropy(logits, labels).item() == pytest.approx(math.log(3) + math.log(40))
    # A confident correct head costs ~0; float64 reference of a random case.
    rng = np.random.default_rng(0)
    raw = [rng.normal(size=(5, 3)), rng.normal(size=(5, 40))]
    ref = sum(np.mean(np.log(np.exp(r).sum(1)) - r[np.arange(5), labels[:, i].numpy()]) for i, r in enumerate(raw))
    got = summed_cross_entropy([torch.tensor(r) for r in raw], labels)
    assert got.item() == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="labels must be"):
        summed_cross_entropy(logits, labels[:, :1])


def test_factor_labels_map_grid_indices_and_skip_continuous_factors():
    meta = {"name": "d", "factors": {
        "shape": {"size": 3, "values": [1, 2, 3]},
        "orientation": {"size": 2, "values": [0.0, 1.5], "indices": [0, 20]},
        "q_w": {"size": 0, "values": None, "continuous": True},
    }}
    frame = pd.DataFrame({"shape": [0, 2, 1], "orientation": [20, 0, 20], "q_w": [0.1, 0.2, 0.3]})
    assert discrete_factors(meta) == {"shape": 3, "orientation": 2}
    assert factor_labels(frame, meta).tolist() == [[0, 1], [2, 0], [1, 1]]
    with pytest.raises(ValueError, match="'orientation': value 7"):
        factor_labels(frame.assign(orientation=[7, 0, 0]), meta)
    with pytest.raises(ValueError, match="'shape': labels outside"):
        factor_labels(frame.assign(shape=[0, 3, 1]), meta)
    with pytest.raises(ValueError, match="no discrete factor"):
        discrete_factors({"name": "x", "factors": {"q": {"size": 0}}})


def squares_with_labels(n=192):
    """Squares whose label is which half (top/bottom, left/right) their centre is in."""
    rng = np.random.default_rng(1)
    images = np.zeros((n, 64, 64, 1), np.uint8)
    labels = np.zeros((n, 2), np.int64)
    for i in range(n):
        top, left = rng.integers(0, 48, size=2)
        images[i, top:top + 16, left:left + 16] = 255
        labels[i] = [(top + 8) >= 32, (left + 8) >= 32]
    return images, labels


def test_classifier_trains_through_the_loop_and_reloads(tmp_path):
    images, labels = squares_with_labels()
    cfg = TrainConfig(dataset="squares", objective="cross_entropy", hparam=1, seed=0, steps=60,
                      checkpoint_steps=[60], batch_size=32, lr=1e-3, architecture="classifier",
                      factors={"row": 2, "col": 2}, validation_fraction=0.2)
    path = tmp_path / "step60.pt"
    train(cfg, images, np.arange(160), {60: path}, tmp_path / "log.parquet", progress=False, labels=labels)
    log = pd.read_parquet(tmp_path / "log.parquet")
    assert list(log.columns) == ["step", *classifier_columns(["row", "col"])]
    np.testing.assert_allclose(log["loss"], log["ce_row"] + log["ce_col"], rtol=1e-5)
    assert log["loss"].tail(10).mean() < 0.7 * log["loss"].head(10).mean()
    model, ckpt = load_checkpoint(path)
    assert isinstance(model, ConvClassifier) and ckpt["config"]["architecture"] == "classifier"
    with torch.no_grad():
        x = torch.from_numpy(images[160:]).permute(0, 3, 1, 2).float() / 255
        held_out = [(h.argmax(1).numpy() == labels[160:, i]).mean() for i, h in enumerate(model(x))]
    assert min(held_out) > 0.7  # it generalises to the held-out squares


def test_fc_vae_trains_and_reloads(tmp_path):
    images = random_squares(96)
    cfg = TrainConfig(dataset="squares", objective="beta_vae", hparam=1, seed=0, steps=20,
                      checkpoint_steps=[10, 20], batch_size=16, architecture="fc")
    paths = {s: tmp_path / f"step{s}.pt" for s in (10, 20)}
    train(cfg, images, np.arange(96), paths, tmp_path / "log.parquet", progress=False)
    model, ckpt = load_checkpoint(paths[20])
    assert isinstance(model, FCVAE) and ckpt["step"] == 20
    log = pd.read_parquet(tmp_path / "log.parquet")
    assert log["loss"].iloc[-5:].mean() < log["loss"].iloc[:5].mean()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"architecture": "mlp"}, "architecture"),
        ({"architecture": "classifier"}, "objective"),  # beta_vae is not a classifier objective
        ({"architecture": "classifier", "objective": "cross_entropy"}, "factors"),
        ({"architecture": "classifier", "objective": "cross_entropy", "factors": {"a": 1}}, "factors"),
        ({"architecture": "classifier", "objective": "cross_entropy", "factors": {"a": 2}, "hparam": 2}, "hparam"),
        ({"factors": {"a": 2}}, "factors"),  # a VAE has no heads
    ],
)
def test_architecture_and_objective_must_agree(overrides, message):
    values = dict(dataset="d", objective="beta_vae", hparam=1.0, seed=0, steps=4, checkpoint_steps=[4])
    values.update(overrides)
    with pytest.raises(ValueError, match=f"TrainConfig.{message}"):
        TrainConfig(**values)
    assert CLASSIFIER_OBJECTIVES["cross_entropy"].hparam == "weight"


def test_labels_are_checked_against_the_factors(tmp_path):
    images, labels = squares_with_labels(64)
    cfg = TrainConfig(dataset="s", objective="cross_entropy", hparam=1, seed=0, steps=2, checkpoint_steps=[2],
                      batch_size=16, architecture="classifier", factors={"row": 2, "col": 2})
    with pytest.raises(ValueError, match="labels must lie"):
        train(cfg, images, np.arange(64), {2: tmp_path / "a.pt"}, tmp_path / "l.parquet", False, labels=labels * 3)
    with pytest.raises(ValueError, match="labels are needed"):
        train(cfg, images, np.arange(64), {2: tmp_path / "a.pt"}, tmp_path / "l.parquet", False)
    assert not any(tmp_path.iterdir())


def test_posterior_collapse_is_visible_at_large_beta(tmp_path):
    """Collapse is logged, not an error: at a large beta every latent dimension's KL goes to ~0,
    while the vanilla VAE keeps some dimensions active (kl_i columns of the loss log)."""
    from vaetransfer.data.generate import build_dataset
    from vaetransfer.data.store import load_images

    build_dataset("dsprites", {"source": "procedural", "generator": "dsprites", "options": {"factor_indices": {
        "orientation": [0, 10, 20, 30], "pos_x": [0, 8, 16, 24, 31], "pos_y": [0, 8, 16, 24, 31]}}}, tmp_path / "data")
    images = load_images(tmp_path / "data")
    kl = {}
    for beta in (1.0, 200.0):
        cfg = TrainConfig(dataset="dsprites", objective="beta_vae", hparam=beta, seed=0, steps=300,
                          checkpoint_steps=[300], batch_size=64, lr=1e-3)
        log_path = tmp_path / f"log{beta:g}.parquet"
        train(cfg, images, np.arange(len(images)), {300: tmp_path / f"b{beta:g}.pt"}, log_path, progress=False)
        log = pd.read_parquet(log_path)
        kl[beta] = log[[f"kl_{i}" for i in range(10)]].tail(20).mean()
    assert (kl[200.0] < 0.05).all()  # every dimension collapsed
    assert (kl[1.0] > 0.5).sum() >= 2 and kl[1.0].sum() > 20 * kl[200.0].sum()


def test_every_configuration_of_the_paper_grid_trains(tmp_path):
    """Each (architecture, objective, value) of config/config.yaml (Tables 6 and 9, the classifier)
    builds through the workflow's run settings and trains two finite steps."""
    from vaetransfer import plan
    from vaetransfer.trainconfig import run_config

    from .conftest import REPO, load_config

    paper = load_config(REPO / "config/config.yaml")
    images, labels = squares_with_labels(64)
    combos = sorted({(r.architecture, r.objective, r.hparam) for r in plan.runs(paper)})
    assert len(combos) == 4 * 5 + 8 + 1
    settings = {**{k: paper["training"][k] for k in ("learning_rate", "latent_dim", "resume_every")}, "batch_size": 16,
                "steps": 2, "checkpoint_steps": [2], "validation_fraction": 0.1, "objective_options": {}}
    for i, (architecture, objective, hparam) in enumerate(combos):
        factors = {"row": 2, "col": 2} if architecture == "classifier" else None
        cfg = run_config("squares", architecture, objective, hparam, 0, settings, 1, "cpu", factors)
        log = tmp_path / f"{i}.parquet"
        train(cfg, images, np.arange(64), {2: tmp_path / f"{i}.pt"}, log, progress=False,
              labels=labels if factors else None)
        assert np.isfinite(pd.read_parquet(log).drop(columns="step").to_numpy()).all(), (architecture, objective, hparam)
