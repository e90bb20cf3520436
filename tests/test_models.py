"""The conv VAE matches disentanglement_lib's conv_encoder/deconv_decoder (spec reference.md §1.1, §1.4)."""

import numpy as np
import pytest
import torch

from vaetransfer.layers import LAYER_NAMES
from vaetransfer.models import WEIGHTED_LAYERS, ConvVAE, VAEOutput, images_to_tensor, sample_latent


def expected_widths(c: int) -> dict[str, int]:
    """Per-layer feature counts from spec §1.4, written out independently of the model."""
    return {
        "input": 4096 * c, "e/1": 32768, "e/2": 8192, "e/3": 4096, "e/4": 1024, "e/5": 1024,
        "e/6": 256, "mean": 10, "log_var": 10, "sampled": 10, "d/1": 256, "d/2": 1024,
        "d/3": 4096, "d/4": 8192, "d/5": 32768, "d/6": 4096 * c,
    }


def expected_parameter_count(c: int) -> int:
    """By hand: conv weights k*k*in*out + out biases, dense in*out + out (latent 10)."""
    conv = lambda k, cin, cout: k * k * cin * cout + cout  # noqa: E731
    dense = lambda cin, cout: cin * cout + cout  # noqa: E731
    encoder = conv(4, c, 32) + conv(4, 32, 32) + conv(2, 32, 64) + conv(2, 64, 64) + dense(1024, 256)
    heads = 2 * dense(256, 10)
    decoder = dense(10, 256) + dense(256, 1024) + conv(4, 64, 64) + conv(4, 64, 32)
    decoder += conv(4, 32, 32) + conv(4, 32, c)
    return encoder + heads + decoder


@pytest.mark.parametrize("c", [1, 3])
def test_activation_widths_and_order(c):
    torch.manual_seed(0)
    model = ConvVAE(channels=c)
    acts = model.activations(torch.rand(2, c, 64, 64), generator=torch.Generator().manual_seed(0))
    assert tuple(acts) == LAYER_NAMES
    widths = {name: act.reshape(2, -1).shape[1] for name, act in acts.items()}
    assert widths == expected_widths(c)
    assert acts["d/6"].shape == (2, c, 64, 64)


@pytest.mark.parametrize("c", [1, 3])
def test_parameter_count_matches_dlib(c):
    model = ConvVAE(channels=c)
    assert sum(p.numel() for p in model.parameters()) == expected_parameter_count(c)
    assert expected_parameter_count(c) == {1: 690_517, 3: 692_567}[c]  # the sums, done on paper
    assert model.model_args() == {"channels": c, "latent_dim": 10}


def test_kernel_sizes_follow_code_not_table7():
    model = ConvVAE()
    assert model.e3.kernel_size == (2, 2) and model.e4.kernel_size == (2, 2)
    assert model.e1.kernel_size == (4, 4) and model.d6.kernel_size == (4, 4)


def test_init_is_keras_like():
    model = ConvVAE(channels=3)
    for name, module in model.layer_modules().items():
        assert torch.count_nonzero(module.bias) == 0, name
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        assert module.weight.abs().max() <= bound, name
        # PyTorch's default kaiming bound is wider for most layers; glorot's must be nearly reached.
        assert module.weight.abs().max() > 0.9 * bound, name


def test_layer_modules_cover_weight_bearing_layers():
    model = ConvVAE()
    modules = model.layer_modules()
    assert tuple(modules) == WEIGHTED_LAYERS
    assert set(LAYER_NAMES) - set(modules) == {"input", "e/5", "sampled"}
    owned = {id(p) for m in modules.values() for p in m.parameters()}
    assert owned == {id(p) for p in model.parameters()}


def test_reset_parameters_with_generator_is_reproducible_and_selective():
    a, b = ConvVAE(), ConvVAE()
    a.reset_parameters(generator=torch.Generator().manual_seed(3))
    b.reset_parameters(generator=torch.Generator().manual_seed(3))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    a.reset_parameters(["d/6"], generator=torch.Generator().manual_seed(4))
    changed = {k for k, v in a.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"d6.weight"}  # biases reset to zero again, so unchanged
    with pytest.raises(KeyError, match="e/5"):
        a.reset_parameters(["e/5"])


def test_activations_agree_with_forward():
    model = ConvVAE()
    x = torch.rand(4, 1, 64, 64)
    out = model(x, generator=torch.Generator().manual_seed(7))
    acts = model.activations(x, generator=torch.Generator().manual_seed(7))
    assert isinstance(out, VAEOutput)
    assert torch.equal(acts["d/6"], out.logits)
    assert torch.equal(acts["sampled"], out.z)
    assert torch.equal(acts["mean"], out.mean) and torch.equal(acts["log_var"], out.log_var)
    assert torch.equal(acts["input"], x)
    assert torch.equal(model.decode(out.z), out.logits)


def test_sampling_is_stochastic_in_eval_mode_and_seeded():
    model = ConvVAE().eval()
    x = torch.rand(3, 1, 64, 64)
    z1 = model(x, generator=torch.Generator().manual_seed(1)).z
    z2 = model(x, generator=torch.Generator().manual_seed(2)).z
    z1_again = model(x, generator=torch.Generator().manual_seed(1)).z
    assert not torch.equal(z1, z2)
    assert torch.equal(z1, z1_again)


def test_sample_latent_reparameterisation():
    mean = torch.full((20000, 2), 3.0, dtype=torch.float64)
    log_var = torch.log(torch.tensor([0.25, 4.0], dtype=torch.float64)).expand(20000, 2)
    z = sample_latent(mean, log_var, torch.Generator().manual_seed(0))
    assert z.dtype == torch.float64
    assert torch.allclose(z.mean(0), torch.tensor([3.0, 3.0], dtype=torch.float64), atol=0.05)
    assert torch.allclose(z.std(0), torch.tensor([0.5, 2.0], dtype=torch.float64), rtol=0.03)
    eps = torch.randn((20000, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(z, mean + log_var.mul(0.5).exp() * eps)


def test_images_to_tensor_layout_and_scale():
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    images[1, 5, 7, 2] = 255
    images[0, 0, 0, 0] = 51
    x = images_to_tensor(images, "cpu")
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    assert x[1, 2, 5, 7] == 1.0 and x[0, 0, 0, 0] == pytest.approx(0.2)
    assert x.sum() == pytest.approx(1.2)
    with pytest.raises(ValueError):
        images_to_tensor(images[0], "cpu")
