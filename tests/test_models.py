"""Layers against their PyTorch counterparts; models against the architecture they claim."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxgan.layers import BatchNorm, DownConv, UpConv
from jaxgan.models import MODELS, make_models


def _nchw(x):
    return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)


@pytest.mark.parametrize(
    ("shape", "torch_bn"),
    [((32, 24), torch.nn.BatchNorm1d), ((8, 5, 5, 6), torch.nn.BatchNorm2d)],
)
@pytest.mark.parametrize(("eps", "momentum"), [(1e-5, 0.1), (0.8, 0.3)])
def test_batchnorm_matches_torch_in_both_modes(shape, torch_bn, eps, momentum):
    features = shape[-1]
    ref = torch_bn(features, eps=eps, momentum=momentum)
    bn = BatchNorm(momentum=momentum, epsilon=eps)
    key = jax.random.key(0)
    variables = bn.init(key, jnp.zeros(shape), train=False)
    scale = jax.random.normal(jax.random.key(1), (features,))
    bias = jax.random.normal(jax.random.key(2), (features,))
    variables = {"params": {"scale": scale, "bias": bias}, "batch_stats": variables["batch_stats"]}
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(np.asarray(scale)))
        ref.bias.copy_(torch.tensor(np.asarray(bias)))

    def to_torch(x):
        x = torch.tensor(np.asarray(x))
        return x.permute(0, 3, 1, 2) if x.ndim == 4 else x

    def from_torch(y):
        return (y.permute(0, 2, 3, 1) if y.ndim == 4 else y).detach().numpy()

    for i in range(3):  # three training calls: the running statistics compound
        x = 3 * jax.random.normal(jax.random.key(10 + i), shape) + 1.5
        y, mutated = bn.apply(variables, x, train=True, mutable=["batch_stats"])
        variables = {"params": variables["params"], **mutated}
        np.testing.assert_allclose(y, from_torch(ref(to_torch(x))), rtol=1e-5, atol=2e-6)
    stats = variables["batch_stats"]
    np.testing.assert_allclose(stats["mean"], ref.running_mean.numpy(), rtol=1e-6, atol=1e-7)
    # The unbiased variance enters the running average, as in PyTorch (flax uses the biased).
    np.testing.assert_allclose(stats["var"], ref.running_var.numpy(), rtol=1e-6)

    ref.eval()
    x = jax.random.normal(jax.random.key(99), shape)
    y = bn.apply(variables, x, train=False)
    np.testing.assert_allclose(y, from_torch(ref(to_torch(x))), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize(("size", "c_in", "c_out"), [(7, 12, 5), (14, 6, 1), (3, 4, 4)])
def test_upconv_is_torch_conv_transpose_4_2_1(size, c_in, c_out):
    x = jax.random.normal(jax.random.key(0), (3, size, size, c_in))
    layer = UpConv(c_out)
    variables = layer.init(jax.random.key(1), x)
    kernel = variables["params"]["kernel"] * 25  # well away from zero
    y = layer.apply({"params": {"kernel": kernel}}, x)
    ref = torch.nn.functional.conv_transpose2d(
        _nchw(x), torch.tensor(np.asarray(kernel)).permute(2, 3, 0, 1), stride=2, padding=1
    )
    assert y.shape == (3, 2 * size, 2 * size, c_out)
    np.testing.assert_allclose(y, ref.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=2e-6)


def _count(params) -> int:
    return sum(math.prod(p.shape) for p in jax.tree.leaves(params))


def test_mlp_has_the_notes_architecture():
    G, D = make_models("mlp")
    z = jnp.zeros((2, 100))
    g_vars = G.init(jax.random.key(0), z, train=False)
    d_vars = D.init(jax.random.key(1), jnp.zeros((2, 28, 28, 1)), train=False)
    widths = [100, 128, 256, 512, 1024, 784]
    dense = sum(a * b + b for a, b in itertools.pairwise(widths))
    batchnorm = 2 * (256 + 512 + 1024)  # after every hidden layer but the first
    assert _count(g_vars["params"]) == dense + batchnorm
    d_widths = [784, 512, 256, 1]
    assert _count(d_vars["params"]) == sum(a * b + b for a, b in itertools.pairwise(d_widths))
    assert "batch_stats" not in d_vars
    # PyTorch-GAN's BatchNorm1d(out_feat, 0.8) sets eps = 0.8.
    assert G.bn_epsilon == 0.8


@pytest.mark.parametrize("name", MODELS)
def test_models_map_noise_to_unit_range_images_and_images_to_logits(name):
    G, D = make_models(name)
    z = jax.random.normal(jax.random.key(0), (5, 100))
    g_vars = G.init(jax.random.key(1), z, train=False)
    images = G.apply(g_vars, z, train=False)
    assert images.shape == (5, 28, 28, 1)
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    d_vars = D.init(jax.random.key(2), images, train=False)
    logits = D.apply(d_vars, images, train=False)
    assert logits.shape == (5,)
    tanh_g, _ = make_models(name, output="tanh")
    assert float(tanh_g.apply(g_vars, z, train=False).min()) < 0


def test_make_models_rejects_unknown_names():
    with pytest.raises(ValueError, match="mlp"):
        make_models("resnet")


@pytest.mark.parametrize(("size", "c_in", "c_out"), [(28, 1, 6), (14, 6, 5), (4, 3, 2)])
def test_downconv_is_torch_conv_4_2_1(size, c_in, c_out):
    x = jax.random.normal(jax.random.key(0), (3, size, size, c_in))
    layer = DownConv(c_out)
    variables = layer.init(jax.random.key(1), x)
    kernel = variables["params"]["kernel"] * 25
    y = layer.apply({"params": {"kernel": kernel}}, x)
    ref = torch.nn.functional.conv2d(
        _nchw(x), torch.tensor(np.asarray(kernel)).permute(3, 2, 0, 1), stride=2, padding=1
    )
    assert y.shape == (3, size // 2, size // 2, c_out)
    np.testing.assert_allclose(y, ref.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("name", MODELS)
def test_conditional_models_take_labels_and_use_them(name):
    G, D = make_models(name, num_classes=10, features=8)
    z = jax.random.normal(jax.random.key(0), (4, 100))
    labels = jnp.array([0, 3, 7, 9])
    g_vars = G.init(jax.random.key(1), z, labels, train=False)
    images = G.apply(g_vars, z, labels, train=False)
    assert images.shape == (4, 28, 28, 1)
    # The label changes the image for the same noise (by far more than rounding: at init the
    # DCGAN's outputs sit near 0.5, where an ulp is 6e-8), and the logit for the same image.
    other = G.apply(g_vars, z, (labels + 1) % 10, train=False)
    assert float(jnp.abs(images - other).max()) > 1e-5
    d_vars = D.init(jax.random.key(2), images, labels, train=False)
    assert d_vars["params"]["projection"]["embedding"].shape[0] == 10
    logits = D.apply(d_vars, images, labels, train=False)
    assert logits.shape == (4,)
    assert (
        float(jnp.abs(logits - D.apply(d_vars, images, (labels + 1) % 10, train=False)).max()) > 0
    )
    # An out-of-range label cannot pass unnoticed: the embedding lookup yields NaN.
    assert bool(jnp.isnan(D.apply(d_vars, images, jnp.array([0, 1, 2, 10]), train=False)[3]))


def test_conditional_and_plain_models_refuse_the_wrong_inputs():
    G, _ = make_models("mlp", num_classes=10)
    z = jnp.zeros((2, 100))
    with pytest.raises(ValueError, match="conditional on 10 classes: pass labels"):
        G.init(jax.random.key(0), z, train=False)
    plain_g, _ = make_models("mlp")
    with pytest.raises(ValueError, match="unconditional"):
        plain_g.init(jax.random.key(0), z, jnp.zeros(2, jnp.int32), train=False)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        make_models("mlp", num_classes=1)
