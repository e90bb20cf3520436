"""Training killed mid-run (SIGTERM from SLURM, a crash) resumes from its last state, bit-identically."""

import signal

import numpy as np
import pandas as pd
import pytest
import torch

from vaetransfer import train as train_mod
from vaetransfer.resume import StopRequested
from vaetransfer.train import TrainConfig, train


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    images = np.zeros((96, 64, 64, 1), dtype=np.uint8)
    for i, (r, c) in enumerate(rng.integers(0, 48, size=(96, 2))):
        images[i, r : r + 16, c : c + 16] = 255
    return images, np.arange(80)


def config(**kw):
    base = dict(dataset="toy", objective="beta_vae", hparam=1.0, seed=3, steps=20,
                checkpoint_steps=[5, 20], batch_size=16, channels=1)
    return TrainConfig(**{**base, **kw})


def paths(root):
    return {5: root / "step5.pt", 20: root / "step20.pt"}, root / "losses.parquet", root / "resume"


def interrupt_at(monkeypatch, step, how):
    real = train_mod.train_step

    def step_then_fail(model, opt, x, objective, hparam, done, gen):
        out = real(model, opt, x, objective, hparam, done, gen)
        if done + 1 == step:
            if how == "signal":
                signal.raise_signal(signal.SIGTERM)
            else:
                raise MemoryError("node went away")
        return out

    monkeypatch.setattr(train_mod, "train_step", step_then_fail)


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def assert_same_run(a_root, b_root):
    for name in ("step5.pt", "step20.pt"):
        wa, wb = weights(a_root / name), weights(b_root / name)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    pd.testing.assert_frame_equal(pd.read_parquet(a_root / "losses.parquet"), pd.read_parquet(b_root / "losses.parquet"))


def test_sigterm_saves_state_and_the_next_attempt_finishes_identically(tmp_path, data, monkeypatch):
    images, idx = data
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    ckpts, losses, _ = paths(ref)
    train(config(), images, idx, ckpts, losses, progress=False)

    ckpts, losses, resume = paths(cut)
    with monkeypatch.context() as m:
        interrupt_at(m, 9, "signal")
        with pytest.raises(StopRequested, match="after step 9"):
            train(config(), images, idx, ckpts, losses, progress=False, resume_dir=resume)
    assert (resume / "state.pt").exists()
    assert torch.load(resume / "state.pt", weights_only=False)["step"] == 9
    # Snakemake deletes a failed job's outputs; the resume dir keeps the step-5 checkpoint.
    ckpts[5].unlink()
    losses.unlink()
    train(config(), images, idx, ckpts, losses, progress=False, resume_dir=resume)
    assert_same_run(ref, cut)
    assert not resume.exists()  # cleared after success: a forced re-run starts over
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_crash_resumes_from_the_last_periodic_state(tmp_path, data, monkeypatch):
    images, idx = data
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    train(config(), images, idx, *paths(ref)[:2], progress=False)
    ckpts, losses, resume = paths(cut)
    with monkeypatch.context() as m:
        interrupt_at(m, 13, "crash")
        with pytest.raises(MemoryError):
            train(config(), images, idx, ckpts, losses, progress=False, resume_dir=resume, save_every=4)
    assert torch.load(resume / "state.pt", weights_only=False)["step"] == 12
    train(config(), images, idx, ckpts, losses, progress=False, resume_dir=resume, save_every=4)
    assert_same_run(ref, cut)


def test_state_of_another_config_is_ignored(tmp_path, data, monkeypatch):
    images, idx = data
    ckpts, losses, resume = paths(tmp_path)
    with monkeypatch.context() as m:
        interrupt_at(m, 9, "signal")
        with pytest.raises(StopRequested):
            train(config(), images, idx, ckpts, losses, progress=False, resume_dir=resume)
    other = config(hparam=4.0)
    train(other, images, idx, ckpts, losses, progress=False, resume_dir=resume)
    log = pd.read_parquet(losses)
    assert list(log["step"]) == list(range(1, 21))
    ref = tmp_path / "ref"
    train(other, images, idx, *paths(ref)[:2], progress=False)
    assert_same_run(ref, tmp_path)
