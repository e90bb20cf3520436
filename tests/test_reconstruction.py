"""Reconstructions, held-out reconstruction loss, example choice and the Figs. 6-8 image grids."""

import numpy as np
import pandas as pd
import pytest
import torch

from vaetransfer.data.store import split_indices, write_dataset
from vaetransfer.models import ConvVAE, FCVAE, images_to_tensor
from vaetransfer.plotting import save_figure
from vaetransfer.reconstruction import (
    columns_grid, example_indices, heldout_indices, pairs_grid, reconstruct, reconstruction_loss,
    target_examples,
)
from vaetransfer.train import TrainConfig, load_checkpoint, save_checkpoint


def tiny_images(n, channels=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 64, 64, channels), dtype=np.uint8)


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    model = ConvVAE(channels=1).eval()
    with torch.no_grad():  # a wide posterior and a z-sensitive decoder, so that sampling matters
        model.log_var.bias.fill_(1.0)
        model.d1.weight.mul_(20.0)
    return model


def manual_recons(model, images, seed):
    """sigmoid(decode(mean + exp(log_var / 2) * eps)), eps from a generator seeded `seed`."""
    x = images_to_tensor(images)
    with torch.no_grad():
        mean, log_var = model.encode(x)
        g = torch.Generator().manual_seed(seed)
        eps = torch.randn(mean.shape, generator=g)
        return torch.sigmoid(model.decode(mean + torch.exp(0.5 * log_var) * eps)).permute(0, 2, 3, 1).numpy()


def test_reconstruct_is_seeded_sigmoid_of_sampled_decoding(vae):
    images = tiny_images(12)
    out = reconstruct(vae, images, seed=3)
    assert out.shape == (12, 64, 64, 1) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out, manual_recons(vae, images, 3), rtol=0, atol=1e-6)
    # The same as the model's own forward pass with that generator, and batch-size independent.
    with torch.no_grad():
        fwd = torch.sigmoid(vae(images_to_tensor(images), torch.Generator().manual_seed(3)).logits)
    np.testing.assert_allclose(out, fwd.permute(0, 2, 3, 1).numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(reconstruct(vae, images, seed=3, batch_size=5), out, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(reconstruct(vae, images, seed=3), out)
    assert not np.allclose(reconstruct(vae, images, seed=4), out, atol=1e-4)  # z is sampled
    rgb = reconstruct(FCVAE(channels=3), tiny_images(2, channels=3))
    assert rgb.shape == (2, 64, 64, 3)
    with pytest.raises(ValueError):
        reconstruct(vae, images.astype(np.float32))


def test_reconstruction_loss_matches_float64_reference(vae):
    images = tiny_images(40, seed=1)
    indices = np.array([3, 7, 8, 15, 21, 22, 30, 39, 0, 11, 5])
    x = images_to_tensor(images[indices]).double()
    with torch.no_grad():
        mean, log_var = vae.encode(x.float())
        eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(2))
        logits = vae.decode(mean + torch.exp(0.5 * log_var) * eps).double()
    # -[x log s(l) + (1 - x) log(1 - s(l))] = softplus(l) - x l, summed over pixels, mean over examples.
    reference = (torch.nn.functional.softplus(logits) - x * logits).flatten(1).sum(1).mean().item()
    losses = [reconstruction_loss(vae, images, indices, batch_size=b, seed=2) for b in (1, 4, 256)]
    for loss in losses:
        assert loss == pytest.approx(reference, rel=1e-5)
    assert abs(reconstruction_loss(vae, images, indices, seed=9) - reference) > 1e-2  # z is sampled
    assert reconstruction_loss(vae, images, indices, use_mean=True) > 0


def test_example_indices_are_the_first_of_the_training_split():
    train, _ = split_indices(1000, 0, 0.1)
    np.testing.assert_array_equal(example_indices({"n": 1000}, 16), train[:16])
    np.testing.assert_array_equal(example_indices(1000, 10, seed=1), split_indices(1000, 1, 0.1)[0][:10])
    with pytest.raises(ValueError):
        example_indices(10, 11)


def test_heldout_indices_are_the_seed_validation_split():
    _, validation = split_indices(1000, 3, 0.1)
    np.testing.assert_array_equal(heldout_indices({"n": 1000}, 3), validation)
    subset = heldout_indices(1000, 3, limit=20)
    assert len(subset) == 20 and np.all(np.diff(subset) > 0) and np.isin(subset, validation).all()
    assert subset.max() > validation[19]  # drawn across the split, not its first indices
    np.testing.assert_array_equal(heldout_indices(1000, 3, limit=500), validation)


def by_position(fig):
    """Axes as a (rows, cols) nested list, top row first, left to right."""
    axes = sorted(fig.axes, key=lambda a: (-round(a.get_position().y0, 4), round(a.get_position().x0, 4)))
    ys = sorted({round(a.get_position().y0, 4) for a in axes}, reverse=True)
    return [[a for a in axes if round(a.get_position().y0, 4) == y] for y in ys]


def test_pairs_grid_layout_and_files(tmp_path):
    inputs = tiny_images(16, seed=2)
    recons = np.random.default_rng(3).random((16, 64, 64, 1)).astype(np.float32)
    fig = pairs_grid(inputs, recons)
    grid = by_position(fig)
    assert [len(row) for row in grid] == [8] * 4
    for i in range(16):
        row, pair = divmod(i, 4)
        shown_in = grid[row][2 * pair].get_images()[0].get_array()
        shown_re = grid[row][2 * pair + 1].get_images()[0].get_array()
        np.testing.assert_allclose(shown_in, inputs[i, ..., 0] / 255.0, atol=1e-6)
        np.testing.assert_allclose(shown_re, recons[i, ..., 0], atol=1e-6)
        assert grid[row][2 * pair].get_images()[0].get_cmap().name == "gray"
    save_figure(fig, tmp_path / "f7.png", tmp_path / "f7.pdf")
    assert (tmp_path / "f7.png").stat().st_size > 20_000 and (tmp_path / "f7.pdf").stat().st_size > 10_000
    with pytest.raises(ValueError):
        pairs_grid(inputs[:15], recons[:15])


def test_columns_grid_layout_titles_and_files(tmp_path):
    inputs = tiny_images(10, channels=3, seed=4)
    labels = ["target-trained", "source-trained", "level 1", "level 2"]
    columns = [(label, np.random.default_rng(k).random((10, 64, 64, 3))) for k, label in enumerate(labels)]
    fig = columns_grid(inputs, columns)
    grid = by_position(fig)
    assert len(fig.axes) == 10 * 5 and [len(row) for row in grid] == [5] * 10
    assert [ax.get_title() for ax in grid[0]] == ["input", *labels]
    assert all(ax.get_title() == "" for row in grid[1:] for ax in row)
    for r in range(10):
        np.testing.assert_allclose(grid[r][0].get_images()[0].get_array(), inputs[r] / 255.0, atol=1e-6)
        for c, (_, images) in enumerate(columns, start=1):
            np.testing.assert_allclose(grid[r][c].get_images()[0].get_array(), images[r], atol=1e-6)
    save_figure(fig, tmp_path / "f6.png", tmp_path / "f6.pdf")
    assert (tmp_path / "f6.png").stat().st_size > 20_000 and (tmp_path / "f6.pdf").stat().st_size > 10_000
    with pytest.raises(ValueError):
        columns_grid(inputs, [("bad", np.zeros((9, 64, 64, 3)))])


def test_end_to_end_from_store_and_checkpoint(tmp_path, vae):
    """The workflow's path: a dataset on disk, a source checkpoint, Fig. 7-style output files."""
    images = tiny_images(50, seed=5)
    meta = {"name": "toy", "factors": {"k": {"size": 50, "values": None}}}
    write_dataset(tmp_path / "toy", images, pd.DataFrame({"k": np.arange(50)}), meta)
    cfg = TrainConfig(dataset="src", objective="beta_vae", hparam=1.0, seed=0, steps=1, checkpoint_steps=[1])
    save_checkpoint(tmp_path / "src.pt", vae, torch.optim.Adam(vae.parameters()), 1, cfg)
    model, _ = load_checkpoint(tmp_path / "src.pt")
    indices, examples = target_examples(tmp_path / "toy", 16)
    np.testing.assert_array_equal(indices, split_indices(50, 0, 0.1)[0][:16])
    np.testing.assert_array_equal(examples, images[indices])
    np.testing.assert_array_equal(reconstruct(model, examples), reconstruct(vae, examples))
    heldout = heldout_indices({"n": 50}, 0)
    assert reconstruction_loss(model, images, heldout) == reconstruction_loss(vae, images, heldout)
    save_figure(pairs_grid(examples, reconstruct(model, examples)), tmp_path / "fig7.png")
    assert (tmp_path / "fig7.png").stat().st_size > 20_000
