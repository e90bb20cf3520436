"""Stacked multi-seed training (vaetransfer.stacked): each member's artifacts equal train() alone.

Loop mode (the CPU default) runs exactly train_step's operations per member and must be bitwise
equal to train(); vmap mode (the CUDA default) batches the members' kernels, so it is equal up to
floating-point noise: its gradients are at least as close to a float64 computation as train_step's,
and after 20 Adam steps each weight tensor is within 5 % of its update (measured <= 0.9 %), about
as close as train() is to itself from an init perturbed by 1e-7 (Adam normalises each gradient
element, so float noise in a near-zero gradient element moves its weight by up to lr).
"""

import dataclasses
import signal

import numpy as np
import pandas as pd
import pytest
import torch

from vaetransfer import models as models_mod
from vaetransfer import stacked as stacked_mod
from vaetransfer.losslog import NonFiniteLoss
from vaetransfer.models import VAEOutput, images_to_tensor
from vaetransfer.objectives import objective_terms
from vaetransfer.resume import StopRequested
from vaetransfer.stacked import StackedModels, check_stackable, new_model, train_stacked
from vaetransfer.train import TrainConfig, _generators, load_checkpoint, train

STEPS = 20
CHECKPOINTS = [7, STEPS]


@pytest.fixture(scope="module", autouse=True)
def _restore_threads():
    """The runs here use threads=1 (process-wide); give the rest of the suite its count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images():
    """96 uint8 64x64x1 images: random sparse noise plus a white square each."""
    rng = np.random.default_rng(0)
    images = ((rng.random((96, 64, 64, 1)) < 0.05) * 255).astype(np.uint8)
    for image, (r, c) in zip(images, rng.integers(0, 44, size=(96, 2))):
        image[r : r + 20, c : c + 20] = 255
    return images


def config(**overrides) -> TrainConfig:
    values = dict(dataset="toy", objective="beta_vae", hparam=1.0, seed=0, steps=STEPS,
                  checkpoint_steps=CHECKPOINTS, batch_size=16)
    return TrainConfig(**{**values, **overrides})


def member_indices(seed: int) -> np.ndarray:
    """Each seed its own train split, as the workflow's split_indices(n, seed) gives it."""
    return np.random.default_rng(100 + seed).permutation(96)[:80]


def outputs(root, tag, steps=CHECKPOINTS):
    root.mkdir(parents=True, exist_ok=True)
    return {s: root / f"{tag}_step{s}.pt" for s in steps}, root / f"{tag}_losses.parquet"


_ALONE: dict = {}


def alone(tmp_path_factory, images, cfg: TrainConfig):
    """train() of one config, cached across tests: (checkpoint paths, loss log path)."""
    key = (cfg.objective, cfg.hparam, cfg.seed, cfg.device, cfg.steps, getattr(cfg, "architecture", "conv"))
    if key not in _ALONE:
        ckpts, log = outputs(tmp_path_factory.mktemp("alone"), "alone", cfg.checkpoint_steps)
        train(cfg, images, member_indices(cfg.seed), ckpts, log, progress=False, threads=1)
        _ALONE[key] = ckpts, log
    return _ALONE[key]


def stacked(root, images, configs, **kwargs):
    paths = [outputs(root, f"m{k}", c.checkpoint_steps) for k, c in enumerate(configs)]
    train_stacked(configs, images, [member_indices(c.seed) for c in configs], [p[0] for p in paths],
                  [p[1] for p in paths], progress=False, threads=1, **kwargs)
    return paths


def checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_bitwise_equal(a_path, b_path):
    a, b = checkpoint(a_path), checkpoint(b_path)
    assert a.keys() == b.keys()
    assert {k: a[k] for k in ("step", "config", "model_args", "format", "format_version")} == \
           {k: b[k] for k in ("step", "config", "model_args", "format", "format_version")}
    assert list(a["state_dict"]) == list(b["state_dict"])
    assert all(torch.equal(a["state_dict"][n], b["state_dict"][n]) for n in a["state_dict"])
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for i, entry in b["optimizer"]["state"].items():
        assert entry.keys() == a["optimizer"]["state"][i].keys()
        assert all(torch.equal(a["optimizer"]["state"][i][n], v) for n, v in entry.items())


MEMBERS = {
    "seeds": [dict(seed=s) for s in (0, 1, 2)],
    "beta_tc_hparams": [dict(objective="beta_tc_vae", hparam=h, seed=s) for h, s in ((1.0, 0), (4.0, 0), (8.0, 1))],
    "annealed_hparams": [dict(objective="annealed_vae", hparam=h, seed=0) for h in (0.5, 5.0, 25.0)],
    "dip_hparams": [dict(objective="dip_vae_ii", hparam=h, seed=s) for h, s in ((1.0, 2), (10.0, 0), (1.0, 1))],
}


HAS_ZOO = "architecture" in {f.name for f in dataclasses.fields(TrainConfig)}
if HAS_ZOO and "fc" in getattr(models_mod, "ARCHITECTURES", {}):
    # 14 M weights, slow on CPU: 2 members, 8 steps
    MEMBERS["fc_seeds"] = [dict(architecture="fc", seed=s, steps=8, checkpoint_steps=[7, 8]) for s in (0, 1)]


@pytest.mark.parametrize("case", list(MEMBERS))
def test_loop_mode_is_bitwise_train(tmp_path, tmp_path_factory, images, case):
    configs = [config(**m) for m in MEMBERS[case]]
    paths = stacked(tmp_path, images, configs, mode="loop")
    for cfg, (ckpts, log) in zip(configs, paths):
        ref_ckpts, ref_log = alone(tmp_path_factory, images, cfg)
        for step in cfg.checkpoint_steps:
            assert_bitwise_equal(ckpts[step], ref_ckpts[step])
        pd.testing.assert_frame_equal(pd.read_parquet(log), pd.read_parquet(ref_log), check_exact=True)


def single_gradients(cfg, batch, dtype):
    """train_step's logged terms and gradients for ``cfg``'s init and noise on ``batch``, in ``dtype``."""
    init_gen, noise_gen = _generators(cfg)
    model = new_model(cfg)
    model.reset_parameters(generator=init_gen)
    model.to(dtype)
    x = images_to_tensor(batch).to(dtype)
    mean, log_var = model.encode(x)
    eps = torch.randn(mean.shape, generator=noise_gen, dtype=torch.float32).to(dtype)  # as sample_latent
    z = mean + torch.exp(0.5 * log_var) * eps
    loss, terms = objective_terms(cfg.objective, cfg.hparam, VAEOutput(mean, log_var, z, model.decode(z)), x, 0)
    loss.backward()
    return terms, {name: p.grad.double() for name, p in model.named_parameters()}


@pytest.mark.parametrize("architecture", ["conv", "fc"] if "fc_seeds" in MEMBERS else ["conv"])
def test_vmap_gradients_equal_single_model_gradients(images, architecture):
    """One step from the same weights, batch and noise: vmap's loss terms are train_step's, and its
    gradients are at least as close to a float64 computation as train_step's float32 ones."""
    zoo = {"architecture": architecture} if architecture != "conv" else {}
    configs = [config(objective="beta_tc_vae", hparam=h, seed=s, **zoo) for h, s in ((1.0, 0), (6.0, 1), (3.0, 2))]
    stack = StackedModels(configs, mode="vmap")
    batches = [images[np.sort(member_indices(c.seed)[:16])] for c in configs]
    x, x_dim = stack.inputs(batches)
    terms = stack.compute_gradients(x, x_dim, step=0)
    for k, (cfg, batch) in enumerate(zip(configs, batches)):
        ref_terms, grads32 = single_gradients(cfg, batch, torch.float32)
        _, grads64 = single_gradients(cfg, batch, torch.float64)
        for name in ref_terms:
            torch.testing.assert_close(terms[k][name], ref_terms[name], rtol=1e-5, atol=1e-5)
        for name, exact in grads64.items():
            err_vmap = float((stack.params[name].grad[k].double() - exact).abs().max())
            err_single = float((grads32[name] - exact).abs().max())
            assert err_vmap <= 2 * err_single + 1e-5 * float(exact.abs().max()), (k, name, err_vmap, err_single)


def initial_weights(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    model = new_model(cfg)
    model.reset_parameters(generator=_generators(cfg)[0])
    return model.state_dict()


@pytest.mark.parametrize("case", ["seeds", "beta_tc_hparams", "annealed_hparams"])
def test_vmap_mode_equals_train_up_to_float_noise(tmp_path, tmp_path_factory, images, case):
    """After 20 steps each weight tensor is within 5 % (measured: <= 0.9 %) of its distance from
    init of train()'s, the loss log within 0.1 %. (train() itself, started from an init perturbed by
    1e-7, ends as far from its unperturbed run: Adam amplifies noise in near-zero gradients.)"""
    configs = [config(**m) for m in MEMBERS[case]]
    paths = stacked(tmp_path, images, configs, mode="vmap")
    for cfg, (ckpts, log) in zip(configs, paths):
        ref_ckpts, ref_log = alone(tmp_path_factory, images, cfg)
        got, want, init = checkpoint(ckpts[STEPS])["state_dict"], checkpoint(ref_ckpts[STEPS])["state_dict"], \
            initial_weights(cfg)
        for name, ref in want.items():
            ratio = float((got[name] - ref).norm() / (ref - init[name]).norm())
            assert ratio < 0.05, f"{cfg.objective} {cfg.hparam:g} seed {cfg.seed} {name}: {ratio}"
        got, want = pd.read_parquet(log), pd.read_parquet(ref_log)
        assert list(got.columns) == list(want.columns)
        np.testing.assert_array_equal(got["step"], want["step"])
        for column in want.columns:
            rtol = 1e-3 if column in ("loss", "reconstruction", "kl", "elbo") else 1e-2
            np.testing.assert_allclose(got[column], want[column], rtol=rtol, atol=1e-3, err_msg=column)


def test_checkpoint_loads_and_optimizer_state_loads_into_single_adam(tmp_path, images):
    configs = [config(seed=s) for s in (0, 1)]
    paths = stacked(tmp_path, images, configs, mode="vmap")
    for k, (ckpts, _) in enumerate(paths):
        model, ckpt = load_checkpoint(ckpts[7])
        assert ckpt["step"] == 7 and ckpt["config"] == configs[k].to_dict()
        optimizer = torch.optim.Adam(model.parameters(), lr=configs[k].lr)
        optimizer.load_state_dict(ckpt["optimizer"])
        for p, name in zip(model.parameters(), ckpt["state_dict"]):
            assert optimizer.state[p]["exp_avg"].shape == p.shape == ckpt["state_dict"][name].shape
        model.train()
        x = images_to_tensor(images[:16])
        stacked_mod.train_mod.train_step(model, optimizer, x, "beta_vae", 1.0, 7)  # steps on
        assert int(optimizer.state[next(model.parameters())]["step"]) == 8


@pytest.mark.parametrize("field, value", [("objective", "dip_vae_ii"), ("batch_size", 32), ("lr", 1e-3),
                                          ("steps", 21), ("dataset", "other"), ("latent_dim", 5)])
def test_incompatible_configs_raise_naming_the_field(images, field, value):
    other = dataclasses.replace(config(seed=1), **{field: value},
                                **({"checkpoint_steps": [7, 21]} if field == "steps" else {}))
    with pytest.raises(ValueError, match=f"field '{field}' differs"):
        check_stackable([config(), other])
    with pytest.raises(ValueError, match=f"field '{field}' differs"):
        train_stacked([config(), other], images, [np.arange(80)] * 2, [{}, {}], ["a", "b"], progress=False)


@pytest.mark.skipif(not HAS_ZOO or "classifier" not in getattr(models_mod, "ARCHITECTURES", {}),
                    reason="no classifier architecture")
def test_classifier_is_not_stackable():
    classifier = dataclasses.replace(config(), architecture="classifier", objective="cross_entropy",
                                     factors={"shape": 3})
    with pytest.raises(ValueError, match="field 'architecture'.*VAEs only"):
        check_stackable([classifier])


def test_bad_arguments_raise(tmp_path, images):
    configs = [config(seed=0), config(seed=1)]
    (c0, l0), (c1, _) = outputs(tmp_path, "a"), outputs(tmp_path, "b")
    with pytest.raises(ValueError, match="loss_log_paths has 1 entries for 2 configs"):
        train_stacked(configs, images, [np.arange(80)] * 2, [c0, c1], [l0], progress=False)
    with pytest.raises(ValueError, match="distinct"):
        train_stacked(configs, images, [np.arange(80)] * 2, [c0, c0], [l0, tmp_path / "x"], progress=False)
    with pytest.raises(ValueError, match="mode"):
        StackedModels(configs, mode="fast")


def test_non_finite_loss_of_one_member_raises_before_writing(tmp_path, images, monkeypatch):
    real = StackedModels.step

    def poisoned(self, x, x_dim, step):
        terms = real(self, x, x_dim, step)
        if step + 1 == 5:
            terms[1]["kl"] = torch.tensor(float("nan"))
        return terms

    monkeypatch.setattr(StackedModels, "step", poisoned)
    configs = [config(seed=s) for s in (0, 1, 2)]
    with pytest.raises(NonFiniteLoss, match="step 5") as info:
        stacked(tmp_path, images, configs, mode="loop")
    assert info.value.step == 5
    assert any("member 1: seed 1" in note for note in info.value.__notes__)
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.parquet"))


def test_resume_after_sigterm_finishes_identically(tmp_path, tmp_path_factory, images, monkeypatch):
    configs = [config(seed=s) for s in (0, 1)]
    resume_dirs = [tmp_path / f"resume{k}" for k in range(2)]
    real = StackedModels.step

    def step_then_signal(self, x, x_dim, step):
        terms = real(self, x, x_dim, step)
        if step + 1 == 9:
            signal.raise_signal(signal.SIGTERM)
        return terms

    with monkeypatch.context() as m:
        m.setattr(StackedModels, "step", step_then_signal)
        with pytest.raises(StopRequested, match="after step 9"):
            stacked(tmp_path, images, configs, mode="loop", resume_dirs=resume_dirs)
    for k, d in enumerate(resume_dirs):
        assert torch.load(d / "state.pt", weights_only=False)["step"] == 9
        (tmp_path / f"m{k}_step7.pt").unlink()  # Snakemake deletes a failed job's outputs
    paths = stacked(tmp_path, images, configs, mode="loop", resume_dirs=resume_dirs)
    assert not any(d.exists() for d in resume_dirs)
    for cfg, (ckpts, log) in zip(configs, paths):
        ref_ckpts, ref_log = alone(tmp_path_factory, images, cfg)
        for step in CHECKPOINTS:
            assert_bitwise_equal(ckpts[step], ref_ckpts[step])
        pd.testing.assert_frame_equal(pd.read_parquet(log), pd.read_parquet(ref_log), check_exact=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_vmap_equals_train_on_cuda(tmp_path, tmp_path_factory, images):
    configs = [config(seed=s, device="cuda") for s in (0, 1, 2)]
    paths = stacked(tmp_path, images, configs)  # auto: vmap on CUDA
    for cfg, (ckpts, log) in zip(configs, paths):
        ref_ckpts, ref_log = alone(tmp_path_factory, images, cfg)
        model, ckpt = load_checkpoint(ckpts[STEPS])
        ref = checkpoint(ref_ckpts[STEPS])["state_dict"]
        for name, value in ckpt["state_dict"].items():
            assert float((value.cpu() - ref[name]).abs().max()) < 1e-3  # <= 10 Adam steps of lr
        for column in ("loss", "reconstruction", "kl"):
            np.testing.assert_allclose(pd.read_parquet(log)[column], pd.read_parquet(ref_log)[column],
                                       rtol=1e-3, atol=1e-3)
