"""Training killed mid-run (SIGTERM from SLURM, SIGKILL, a crash) resumes from its last state, bit-identically."""

import json
import logging
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from vaetransfer import resume as resume_mod
from vaetransfer import train as train_mod
from vaetransfer.resume import ResumeDir, StopRequested
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

    def step_then_fail(model, opt, x, objective, hparam, done, *rest):
        out = real(model, opt, x, objective, hparam, done, *rest)
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


# A training job in its own process, slowed to 80 ms a step (the numbers are unchanged) so that
# the test can SIGKILL it mid-run; one thread, as the in-process runs it is compared with.
CHILD = """
import json, sys, time
from pathlib import Path
import numpy as np
from vaetransfer import train as t
real = t.train_step
t.train_step = lambda *args: time.sleep(0.08) or real(*args)
root, cfg = Path(sys.argv[1]), t.TrainConfig.from_dict(json.loads(sys.argv[2]))
t.train(cfg, np.load(root.parent / "images.npy"), np.arange(80), {5: root / "step5.pt", 20: root / "step20.pt"},
        root / "losses.parquet", progress=False, threads=1, resume_dir=root / "resume", save_every=2)
"""


def saved_step(resume) -> int:
    """Step of the saved state; 0 if none (state.pt is renamed into place whole, never partial)."""
    state = resume / "state.pt"
    return torch.load(state, weights_only=False)["step"] if state.exists() else 0


@pytest.fixture
def one_thread():
    """CPU results are bit-identical only at the same thread count: run in-process with 1 too."""
    before = torch.get_num_threads()
    yield 1
    torch.set_num_threads(before)


def test_sigkill_resumes_from_the_last_saved_state(tmp_path, data, one_thread):
    images, idx = data
    np.save(tmp_path / "images.npy", images)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    train(config(), images, idx, *paths(ref)[:2], progress=False, threads=one_thread)

    ckpts, losses, resume = paths(cut)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(cut), json.dumps(config().to_dict())],
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while saved_step(resume) < 6:  # past the step-5 checkpoint, so the resume must put it back
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, "the child saved no resume state past step 5"
        time.sleep(0.01)
    child.kill()  # SIGKILL: no handler runs, nothing is saved on the way out
    assert child.wait(timeout=60) == -signal.SIGKILL
    child.stderr.close()
    assert 6 <= saved_step(resume) < 20 and not ckpts[20].exists()
    for output in (ckpts[5], losses):  # what Snakemake does to a failed job's outputs
        output.unlink(missing_ok=True)
    train(config(), images, idx, ckpts, losses, progress=False, threads=one_thread,
          resume_dir=resume, save_every=2)
    assert_same_run(ref, cut)
    assert not resume.exists()


def test_half_written_files_are_never_taken_for_finished_ones(tmp_path, data, monkeypatch, caplog):
    """A kill mid-write leaves only a temporary (never read); an unreadable state means start over."""
    images, idx = data
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    train(config(), images, idx, *paths(ref)[:2], progress=False)
    ckpts, losses, resume = paths(cut)
    with monkeypatch.context() as m:
        interrupt_at(m, 9, "signal")
        with pytest.raises(StopRequested):
            train(config(), images, idx, ckpts, losses, progress=False, resume_dir=resume)
    state = (resume / "state.pt").read_bytes()
    # what atomic_path leaves when killed mid-write: truncated files under temporary names
    (resume / ".state.pt.k1ll3d.tmp.pt").write_bytes(state[: len(state) // 2])
    (resume / ".step20.pt.k1ll3d.tmp.pt").write_bytes(state[:100])
    ckpts[5].unlink()
    train(config(), images, idx, ckpts, losses, progress=False, resume_dir=resume)
    assert_same_run(ref, cut)

    # A truncated state.pt itself (a node crash before the data reached the disk): ignored.
    ckpts[20].unlink()
    losses.unlink()
    resume.mkdir()
    (resume / "state.pt").write_bytes(state[: len(state) // 2])
    with caplog.at_level(logging.WARNING, logger="vaetransfer.resume"):
        train(config(), images, idx, ckpts, losses, progress=False, resume_dir=resume)
    assert "unreadable" in caplog.text and "starting over" in caplog.text
    assert_same_run(ref, cut)


def test_a_resume_state_of_an_older_log_layout_is_ignored(tmp_path, data, monkeypatch, caplog):
    """A state saved before the kl_i columns existed cannot extend today's log: start over."""
    images, idx = data
    ckpts, losses, resume = paths(tmp_path)
    with monkeypatch.context() as m:
        interrupt_at(m, 9, "signal")
        with pytest.raises(StopRequested):
            train(config(), images, idx, ckpts, losses, progress=False, resume_dir=resume)
    state = torch.load(resume / "state.pt", weights_only=False)
    del state["loss_rows"]["columns"]
    torch.save(state, resume / "state.pt")
    with caplog.at_level(logging.WARNING, logger="vaetransfer.train"):
        train(config(), images, idx, ckpts, losses, progress=False, resume_dir=resume)
    assert "other columns; starting over" in caplog.text
    assert pd.read_parquet(losses)["step"].tolist() == list(range(1, 21))


def test_resume_writes_cut_short_leave_no_half_file(tmp_path, monkeypatch):
    """Saving a state, or putting back a kept checkpoint, dies mid-write: the old file stays whole."""
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    gen = torch.Generator()
    rd = ResumeDir(tmp_path / "resume")
    cfg = config().to_dict()
    rd.save(3, cfg, model, optimizer, gen, {"steps": [], "values": []})

    def cut_short(obj_or_src, target, *args, **kwargs):
        open(target, "wb").write(b"PK\x03\x04 half a file")
        raise OSError("No space left on device")

    with monkeypatch.context() as m:
        m.setattr(torch, "save", cut_short)
        with pytest.raises(OSError):
            rd.save(7, cfg, model, optimizer, gen, {"steps": [], "values": []})
    assert rd.load(cfg)["step"] == 3
    (tmp_path / "resume/step5.pt").write_bytes(b"a kept checkpoint")
    out = tmp_path / "out" / "step5.pt"
    with monkeypatch.context() as m:
        m.setattr(resume_mod.shutil, "copy2", cut_short)
        with pytest.raises(OSError):
            rd.restore_checkpoints({5: out}, upto=9)
    assert list((tmp_path / "out").iterdir()) == []  # no half checkpoint that a retry would keep
    rd.restore_checkpoints({5: out}, upto=9)
    assert out.read_bytes() == b"a kept checkpoint"
    assert sorted(p.name for p in (tmp_path / "resume").iterdir()) == ["state.pt", "step5.pt"]
