"""Transfer training (spec reference.md §6.1): start from a source model, re-initialise and train the
listed layers, keep every other layer frozen, with a fresh optimiser."""

import numpy as np
import pytest
import torch

from vaetransfer.train import TrainConfig, load_checkpoint, train

from .test_train import random_squares


def _config(**overrides):
    values = dict(dataset="squares", objective="beta_vae", hparam=1.0, seed=0, steps=8,
                  checkpoint_steps=[8], batch_size=16, lr=1e-3)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A source VAE trained 8 steps on squares (seed 0)."""
    root = tmp_path_factory.mktemp("source")
    images = random_squares(64, seed=0)
    train(_config(), images, np.arange(64), {8: root / "step8.pt"}, root / "log.parquet", progress=False)
    return root / "step8.pt"


def _transfer(tmp_path, source, retrain, **overrides):
    target = random_squares(64, seed=1)  # other data: the "target domain"
    cfg = _config(init_checkpoint=str(source), retrain_layers=retrain, seed=3, **overrides)
    path = tmp_path / "step8.pt"
    train(cfg, target, np.arange(64), {8: path}, tmp_path / "log.parquet", progress=False)
    return path


def _layer_tensors(model):
    return {name: [p.detach().clone() for p in module.parameters()] for name, module in model.layer_modules().items()}


@pytest.mark.parametrize("retrain", [["mean", "log_var"], ["d/1", "d/2", "d/3"], ["d/6"]])
def test_frozen_layers_do_not_change_and_retrained_ones_do(tmp_path, source, retrain):
    path = _transfer(tmp_path, source, retrain)
    before = _layer_tensors(load_checkpoint(source)[0])
    model, ckpt = load_checkpoint(path)
    after = _layer_tensors(model)
    for name in before:
        same = all(torch.equal(a, b) for a, b in zip(before[name], after[name]))
        assert same == (name not in retrain), name
    assert ckpt["config"]["init_checkpoint"] == str(source) and ckpt["config"]["retrain_layers"] == retrain
    # the fresh Adam holds state for the retrained parameters only
    n_trainable = sum(len(before[name]) for name in retrain)
    assert len(ckpt["optimizer"]["state"]) == n_trainable


def test_retrained_layers_are_reinitialised_not_fine_tuned(tmp_path, source):
    """With a negligible lr (Adam moves each weight by about lr per step) the retrained layers hold
    their fresh Keras-default init (zero biases, new glorot weights), not the source's."""
    path = _transfer(tmp_path, source, ["mean", "log_var"], lr=1e-30)
    src, out = load_checkpoint(source)[0], load_checkpoint(path)[0]
    for name in ("mean", "log_var"):
        assert getattr(out, name).bias.abs().max() < 1e-27
        assert not torch.allclose(getattr(out, name).weight, getattr(src, name).weight)
        bound = (6 / sum(getattr(out, name).weight.shape)) ** 0.5
        assert getattr(out, name).weight.abs().max() <= bound


def test_transfer_runs_are_reproducible(tmp_path, source):
    a = _transfer(tmp_path / "a", source, ["mean", "log_var"])
    b = _transfer(tmp_path / "b", source, ["mean", "log_var"])
    sa, sb = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"retrain_layers": ["mean"]}, "retrain_layers"),  # no init_checkpoint
        ({"init_checkpoint": "x.pt"}, "retrain_layers"),  # nothing to retrain
        ({"init_checkpoint": "x.pt", "retrain_layers": ["e/5"]}, "retrain_layers"),  # flatten has no weights
        ({"init_checkpoint": "x.pt", "retrain_layers": ["mean", "mean"]}, "retrain_layers"),
        ({"init_checkpoint": "", "retrain_layers": ["mean"]}, "init_checkpoint"),
    ],
)
def test_bad_transfer_settings_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        _config(**overrides)


def test_a_source_of_another_architecture_is_refused(tmp_path, source):
    with pytest.raises(ValueError, match="cannot start a fc run"):
        _transfer(tmp_path, source, ["mean"], architecture="fc")
    assert not (tmp_path / "step8.pt").exists()
