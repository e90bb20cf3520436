"""Training loop, checkpoints and loss log (spec reference.md §2-§3)."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vaetransfer import train as train_mod
from vaetransfer.models import ConvVAE
from vaetransfer.train import (
    LOG_COLUMNS,
    NonFiniteLoss,
    TrainConfig,
    epoch_batches,
    kl_columns,
    load_checkpoint,
    log_columns,
    save_checkpoint,
    train,
)


def random_squares(n: int, seed: int = 0) -> np.ndarray:
    """n uint8 images (n, 64, 64, 1): black, with one white square of random size and place."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 64, 64, 1), dtype=np.uint8)
    for image in images:
        size = rng.integers(8, 24)
        top, left = rng.integers(0, 64 - size, size=2)
        image[top : top + size, left : left + size] = 255
    return images


def config(**overrides) -> TrainConfig:
    values = dict(dataset="squares", objective="beta_vae", hparam=1.0, seed=0, steps=6,
                  checkpoint_steps=[3, 6], batch_size=16)
    values.update(overrides)
    return TrainConfig(**values)


def run(tmp_path, cfg: TrainConfig, images: np.ndarray, train_indices=None, **kwargs):
    """Train into tmp_path; return (checkpoint paths, loss log path)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = {s: tmp_path / f"step{s}.pt" for s in cfg.checkpoint_steps}
    log = tmp_path / "loss.parquet"
    indices = np.arange(len(images)) if train_indices is None else train_indices
    train(cfg, images, indices, paths, log, progress=kwargs.pop("progress", False), **kwargs)
    return paths, log


def state(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def squares_run(tmp_path_factory):
    """80 steps of batch 32 on 256 memory-mapped squares, 26 indices held out.

    lr is raised from 1e-4 to 5e-4 so a clear drop fits in few steps (the suite must stay fast).
    """
    root = tmp_path_factory.mktemp("squares")
    images = np.lib.format.open_memmap(root / "images.npy", mode="w+", dtype=np.uint8,
                                       shape=(256, 64, 64, 1))
    images[:] = random_squares(256)
    images.flush()
    images = np.load(root / "images.npy", mmap_mode="r")
    cfg = config(steps=80, checkpoint_steps=[20, 80], batch_size=32, lr=5e-4)
    paths, log = run(root / "run", cfg, images, train_indices=np.arange(230))
    return cfg, images, paths, log


def test_loss_decreases(squares_run):
    _, _, _, log = squares_run
    loss = pd.read_parquet(log)["loss"].to_numpy()
    assert loss[:10].mean() > 2500  # logits near 0 at init: about 4096·ln 2 = 2839 nats
    assert loss[-10:].mean() < 0.5 * loss[:10].mean()


def test_loss_log_schema(squares_run):
    cfg, _, _, log = squares_run
    frame = pd.read_parquet(log)
    assert tuple(frame.columns) == (*LOG_COLUMNS, *kl_columns(10)) == log_columns("beta_vae", 10)
    assert frame["step"].tolist() == list(range(1, cfg.steps + 1))
    assert frame["step"].dtype == np.int64 and frame["loss"].dtype == np.float64
    # β = 1: the loss is exactly the negative ELBO
    np.testing.assert_allclose(frame["loss"], -frame["elbo"], rtol=1e-6)
    np.testing.assert_allclose(frame["loss"], frame["reconstruction"] + frame["kl"], rtol=1e-6)


def test_kl_per_dimension_is_logged_and_sums_to_kl(squares_run):
    """Posterior collapse is visible in the log (a kl_i near 0), not an error."""
    _, _, _, log = squares_run
    frame = pd.read_parquet(log)
    per_dim = frame[list(kl_columns(10))]
    assert (per_dim.dtypes == np.float64).all() and (per_dim.to_numpy() >= 0).all()
    np.testing.assert_allclose(per_dim.sum(axis=1), frame["kl"], rtol=1e-5)
    assert per_dim.iloc[-1].std() > 0  # dimensions are told apart, not one copy of kl / d


def test_checkpoints_only_at_configured_steps(squares_run):
    cfg, _, paths, log = squares_run
    files = sorted(p.name for p in log.parent.iterdir())
    assert files == ["loss.parquet", "step20.pt", "step80.pt"]  # no stray temp files
    for step, path in paths.items():
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["step"] == step
        assert ckpt["config"] == cfg.to_dict()
        assert TrainConfig.from_dict(ckpt["config"]) == cfg
        assert ckpt["model_args"] == {"channels": 1, "latent_dim": 10}
        adam_steps = {float(s["step"]) for s in ckpt["optimizer"]["state"].values()}
        assert adam_steps == {float(step)}
        assert ckpt["optimizer"]["param_groups"][0]["lr"] == cfg.lr


def test_load_checkpoint_reproduces_weights(squares_run):
    _, images, paths, _ = squares_run
    model, ckpt = load_checkpoint(paths[80])
    assert isinstance(model, ConvVAE) and not model.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][name]), name
    assert not torch.equal(ckpt["state_dict"]["e1.weight"], state(paths[20])["e1.weight"])


def test_training_prefix_is_bit_identical(squares_run, tmp_path):
    """A 20-step run with the same seed reproduces the 80-step run's step-20 checkpoint."""
    cfg, images, paths, log = squares_run
    short = dataclasses.replace(cfg, steps=20, checkpoint_steps=[20])
    short_paths, short_log = run(tmp_path, short, images, train_indices=np.arange(230))
    for name, value in state(paths[20]).items():
        assert torch.equal(value, state(short_paths[20])[name]), name
    pd.testing.assert_frame_equal(pd.read_parquet(short_log), pd.read_parquet(log).iloc[:20])


def test_same_seed_bit_identical_different_seed_differs(tmp_path):
    images = random_squares(64, seed=1)
    a_paths, a_log = run(tmp_path / "a", config(seed=3), images)
    torch.manual_seed(12345)  # the global RNG must not matter
    b_paths, b_log = run(tmp_path / "b", config(seed=3), images)
    c_paths, c_log = run(tmp_path / "c", config(seed=4), images)
    for name, value in state(a_paths[6]).items():
        assert torch.equal(value, state(b_paths[6])[name]), name
    pd.testing.assert_frame_equal(pd.read_parquet(a_log), pd.read_parquet(b_log))
    assert not torch.equal(state(a_paths[6])["e1.weight"], state(c_paths[6])["e1.weight"])
    assert not pd.read_parquet(a_log)["loss"].equals(pd.read_parquet(c_log)["loss"])


def test_loss_log_flushed_at_checkpoint_and_failed_write_leaves_nothing(tmp_path):
    images = random_squares(32)
    (tmp_path / "step6.pt").mkdir()  # a directory where the last checkpoint should go
    with pytest.raises(OSError):
        run(tmp_path, config(), images)
    assert pd.read_parquet(tmp_path / "loss.parquet")["step"].tolist() == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.parquet", "step3.pt", "step6.pt"]


@pytest.mark.parametrize("writer", ["checkpoint", "loss log"])
def test_a_write_cut_short_leaves_the_earlier_files_whole(tmp_path, monkeypatch, writer):
    """The second write dies half-way (disk full, a kill): no half file under a final name."""
    real = torch.save if writer == "checkpoint" else pd.DataFrame.to_parquet
    calls = []

    def cut_short(obj, target, *args, **kwargs):
        calls.append(target)
        if len(calls) == 2:
            Path(target).write_bytes(b"PK\x03\x04 half a file")
            raise OSError("No space left on device")
        return real(obj, target, *args, **kwargs)

    monkeypatch.setattr(*((torch, "save") if writer == "checkpoint" else (pd.DataFrame, "to_parquet")), cut_short)
    with pytest.raises(OSError, match="No space"):
        run(tmp_path, config(), random_squares(32))
    monkeypatch.undo()
    assert pd.read_parquet(tmp_path / "loss.parquet")["step"].tolist() == [1, 2, 3]
    assert load_checkpoint(tmp_path / "step3.pt")[1]["step"] == 3
    written = ["loss.parquet", "step3.pt"] + (["step6.pt"] if writer == "loss log" else [])
    assert sorted(p.name for p in tmp_path.iterdir()) == written  # no temporary left behind


def poison_log_var(monkeypatch, at_step: int, dim: int):
    """From update ``at_step`` on, latent ``dim`` gets log σ² = 100: exp overflows float32, so its
    KL is inf while the reconstruction stays finite (z is large, not infinite)."""
    real = train_mod.train_step

    def step(model, *args):
        if args[4] + 1 == at_step:  # args[4]: updates already done
            def hook(module, inputs, output):
                output = output.clone()
                output[:, dim] = 100.0
                return output
            model.log_var.register_forward_hook(hook)
        return real(model, *args)

    monkeypatch.setattr(train_mod, "train_step", step)


@pytest.mark.parametrize("resumable", [False, True])
def test_non_finite_loss_stops_naming_step_and_term(tmp_path, monkeypatch, resumable):
    """Detected when the logged terms reach the host (a resume save at step 6, else the step-8
    checkpoint), reported at the first bad step; nothing at or after it is written."""
    poison_log_var(monkeypatch, at_step=5, dim=3)
    kwargs = dict(resume_dir=tmp_path / "resume", save_every=2) if resumable else {}
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss at step 5: loss = inf, kl = inf, elbo = -inf, "
                                            r"kl_3 = inf \(reconstruction = [0-9.e+]+\)") as caught:
        run(tmp_path, config(steps=8, checkpoint_steps=[3, 8]), random_squares(32), **kwargs)
    assert isinstance(caught.value, RuntimeError) and caught.value.step == 5
    assert math.isinf(caught.value.terms["kl_3"]) and math.isfinite(caught.value.terms["kl_2"])
    assert not (tmp_path / "step8.pt").exists()
    _, ckpt = load_checkpoint(tmp_path / "step3.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    frame = pd.read_parquet(tmp_path / "loss.parquet")
    assert frame["step"].tolist() == [1, 2, 3] and np.isfinite(frame.drop(columns="step").to_numpy()).all()
    if resumable:
        assert torch.load(tmp_path / "resume/state.pt", weights_only=False)["step"] == 4


def test_non_finite_loss_is_caught_every_host_move(tmp_path, monkeypatch):
    """Between checkpoints the terms reach the host every _HOST_EVERY steps: caught there."""
    monkeypatch.setattr(train_mod, "_HOST_EVERY", 2)
    poison_log_var(monkeypatch, at_step=3, dim=0)
    poisoned, steps_run = train_mod.train_step, []
    monkeypatch.setattr(train_mod, "train_step", lambda *args: steps_run.append(1) or poisoned(*args))
    with pytest.raises(NonFiniteLoss, match=r"at step 3: .*kl_0 = inf"):
        run(tmp_path, config(steps=8, checkpoint_steps=[8]), random_squares(32))
    assert len(steps_run) == 4 and list(tmp_path.iterdir()) == []


def test_progress_bar_goes_to_stderr(tmp_path, capfd):
    run(tmp_path, config(steps=2, checkpoint_steps=[2]), random_squares(16), progress=True)
    captured = capfd.readouterr()
    assert "2/2" in captured.err and captured.out == ""


def test_epoch_batches_reshuffle_and_drop_last():
    stream = epoch_batches(np.arange(10), 4, np.random.default_rng(0))
    epoch1 = [next(stream) for _ in range(2)]
    epoch2 = [next(stream) for _ in range(2)]
    for batch in epoch1 + epoch2:
        assert len(batch) == 4 and np.all(np.diff(batch) > 0)
    assert len(np.unique(np.concatenate(epoch1))) == 8  # no repeats within an epoch
    assert not all(np.array_equal(a, b) for a, b in zip(epoch1, epoch2))


def test_rejects_too_few_indices_and_mismatched_inputs(tmp_path):
    images = random_squares(32)
    with pytest.raises(ValueError, match="fewer than one batch"):
        run(tmp_path, config(), images, train_indices=np.arange(15))
    with pytest.raises(ValueError, match="checkpoint_paths"):
        train(config(), images, np.arange(32), {6: tmp_path / "x.pt"}, tmp_path / "l.parquet", False)
    with pytest.raises(ValueError, match="images"):
        run(tmp_path, config(channels=3), images)
    with pytest.raises(ValueError, match="train_indices"):
        run(tmp_path, config(), images, train_indices=np.arange(16, 48))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "field, value",
    [
        ("dataset", ""), ("objective", "factor_vae"), ("hparam", float("nan")), ("hparam", "1"),
        ("seed", -1), ("seed", 1.5), ("steps", 0), ("checkpoint_steps", []),
        ("checkpoint_steps", [3]), ("checkpoint_steps", [6, 3]), ("checkpoint_steps", [0, 6]),
        ("checkpoint_steps", [3, 3, 6]), ("checkpoint_steps", [3, 9]), ("batch_size", 0),
        ("lr", 0.0), ("latent_dim", True), ("channels", 0), ("validation_fraction", 1.0),
        ("device", ""),
    ],
)
def test_bad_config_value_names_field(field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field}="):
        config(**{field: value})


def test_objective_hparam_and_options_are_checked_and_resolved():
    with pytest.raises(ValueError, match=r"TrainConfig\.hparam=2\.0: vae: beta=2\.0 is not allowed"):
        config(objective="vae", hparam=2.0)
    with pytest.raises(ValueError, match=r"TrainConfig\.objective_options=.*beta_tc_vae: option variant"):
        config(objective="beta_tc_vae", objective_options={"variant": "tc"})
    with pytest.raises(ValueError, match=r"TrainConfig\.objective_options=.*unknown option"):
        config(objective="beta_vae", objective_options={"variant": "total_correlation"})
    assert config(objective="beta_tc_vae").objective_options == {"variant": "total_correlation"}
    assert config().objective_options == {}


def test_extra_terms_logged_and_authors_beta_tc_variant_trains_a_beta_vae(tmp_path):
    images = random_squares(32)
    short = dict(steps=2, checkpoint_steps=[2], hparam=4.0)
    tc_paths, tc_log = run(tmp_path / "tc", config(objective="beta_tc_vae", **short), images)
    authors_paths, authors_log = run(
        tmp_path / "authors",
        config(objective="beta_tc_vae", objective_options={"variant": "authors_beta_vae"}, **short), images,
    )
    beta_paths, beta_log = run(tmp_path / "beta", config(objective="beta_vae", **short), images)
    tc_frame, authors_frame = pd.read_parquet(tc_log), pd.read_parquet(authors_log)
    assert tuple(tc_frame.columns) == (*LOG_COLUMNS, "tc", *kl_columns(10)) == tuple(authors_frame.columns)
    assert tuple(tc_frame.columns) == log_columns("beta_tc_vae", 10)
    assert np.isfinite(tc_frame["tc"]).all()
    # the authors' "beta_tc_vae": the same updates as beta_vae, bit for bit
    pd.testing.assert_frame_equal(authors_frame.drop(columns="tc"), pd.read_parquet(beta_log))
    for name, value in state(beta_paths[2]).items():
        assert torch.equal(value, state(authors_paths[2])[name]), name
    assert not torch.equal(state(tc_paths[2])["e1.weight"], state(beta_paths[2])["e1.weight"])
    ckpt = torch.load(authors_paths[2], weights_only=True)
    assert ckpt["config"]["objective_options"] == {"variant": "authors_beta_vae"}


def test_config_dict_round_trip_and_unknown_keys():
    cfg = config(hparam=4, checkpoint_steps=(3, 6))
    assert cfg.hparam == 4.0 and isinstance(cfg.hparam, float)
    assert cfg.checkpoint_steps == [3, 6]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="beta"):
        TrainConfig.from_dict({**cfg.to_dict(), "beta": 2.0})


def test_load_checkpoint_rejects_foreign_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": ConvVAE().state_dict()}, plain)
    with pytest.raises(ValueError, match="plain.pt"):
        load_checkpoint(plain)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_save_checkpoint_round_trip_channels3(tmp_path):
    model = ConvVAE(channels=3)
    optimizer = torch.optim.Adam(model.parameters())
    save_checkpoint(tmp_path / "m.pt", model, optimizer, 6, config(channels=3))
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt")
    assert loaded.channels == 3 and ckpt["config"]["channels"] == 3
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name])
