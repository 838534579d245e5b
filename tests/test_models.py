"""Layers against their PyTorch counterparts; models against the architecture they claim.

The comparisons with PyTorch run in float64 on both sides (`jax.enable_x64`, `.double()`): two
correct implementations then agree to ~1e-15 relative whatever their order of summation, on any
CPU, and `RTOL` below is still far below a real difference (epsilon added outside the square
root: ~1e-6 relative; the biased variance in the running average: 3%).
"""

import functools
import itertools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxgan import layers
from jaxgan.layers import BatchNorm, DownConv, SameConv, UpConv, dcgan_kernel_init, patch_matmul
from jaxgan.models import MODELS, make_models

# Each output below is a sum of at most a few hundred products, or a mean and variance of at
# most 200 values: float64 rounding of either order is at most ~200 * 1.1e-16 ~ 2e-14 of the
# largest term. Tolerances are RTOL of the compared array's largest element, a margin of 1e5.
RTOL = 1e-9


@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


def normal32(seed: int, shape) -> jax.Array:
    """A float32 standard normal draw, by NumPy: an eager `jax.random` draw compiles a program
    for every new shape."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32))


def normal64(seed: int, shape) -> jax.Array:
    """A float32 standard normal draw, cast exactly to float64 (call under `float64`)."""
    return normal32(seed, shape).astype(jnp.float64)


def assert_close64(actual, expected):
    """Equal to float64 rounding, relative to the largest element of `expected`."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype == np.float64
    atol = RTOL * np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=atol)


def _init(module, seed: int, *inputs):
    """`module.init(key(seed), *inputs, train=False)`, jitted: an eager init compiles each
    layer's random draws one by one."""
    return jax.jit(module.init, static_argnames="train")(jax.random.key(seed), *inputs, train=False)


@functools.cache
def _forward(module):
    """`module.apply(variables, *inputs, train=False)`, jitted once per module: eagerly, every
    operation of a forward pass is compiled on its own."""
    return jax.jit(functools.partial(module.apply, train=False))


def _kernel(layer, seed: int, x) -> jax.Array:
    """A float64 kernel of `layer`'s shape for input `x`, entries of order 0.5 (well away from
    zero), drawn without running the layer's own initializer."""
    shape = jax.eval_shape(layer.init, jax.random.key(0), x)["params"]["kernel"].shape
    return 0.5 * normal64(seed, shape)


def _nchw(x):
    return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)


@pytest.mark.parametrize(
    ("shape", "torch_bn"),
    [((32, 24), torch.nn.BatchNorm1d), ((8, 5, 5, 6), torch.nn.BatchNorm2d)],
)
@pytest.mark.parametrize(("eps", "momentum"), [(1e-5, 0.1), (0.8, 0.3)])
def test_batchnorm_matches_torch_in_both_modes(shape, torch_bn, eps, momentum, float64):
    features = shape[-1]
    ref = torch_bn(features, eps=eps, momentum=momentum).double()
    bn = BatchNorm(momentum=momentum, epsilon=eps)
    key = jax.random.key(0)
    variables = bn.init(key, jnp.zeros(shape), train=False)
    scale, bias = normal64(1, (features,)), normal64(2, (features,))
    variables = {"params": {"scale": scale, "bias": bias}, "batch_stats": variables["batch_stats"]}
    assert variables["batch_stats"]["var"].dtype == jnp.float64
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(np.asarray(scale)))
        ref.bias.copy_(torch.tensor(np.asarray(bias)))

    def to_torch(x):
        x = torch.tensor(np.asarray(x))
        return x.permute(0, 3, 1, 2) if x.ndim == 4 else x

    def from_torch(y):
        return (y.permute(0, 2, 3, 1) if y.ndim == 4 else y).detach().numpy()

    train = jax.jit(functools.partial(bn.apply, train=True, mutable=["batch_stats"]))
    for i in range(3):  # three training calls: the running statistics compound
        x = 3 * normal64(10 + i, shape) + 1.5
        y, mutated = train(variables, x)
        variables = {"params": variables["params"], **mutated}
        assert_close64(y, from_torch(ref(to_torch(x))))
    stats = variables["batch_stats"]
    assert_close64(stats["mean"], ref.running_mean.numpy())
    # The unbiased variance enters the running average, as in PyTorch (flax uses the biased).
    assert_close64(stats["var"], ref.running_var.numpy())

    ref.eval()
    x = normal64(99, shape)
    y = _forward(bn)(variables, x)
    assert_close64(y, from_torch(ref(to_torch(x))))


def _torch_conv(layer_class, x, kernel):
    """PyTorch's counterpart of a jaxgan convolution, on torch tensors (NCHW; kernel HWIO)."""
    if layer_class is UpConv:
        return torch.nn.functional.conv_transpose2d(x, kernel.permute(2, 3, 0, 1), None, 2, 1)
    stride = 2 if layer_class is DownConv else 1
    return torch.nn.functional.conv2d(x, kernel.permute(3, 2, 0, 1), None, stride, 1)


UPCONV_FORMS = ["subpixel", "scatter", "auto"]


@pytest.mark.parametrize("form", UPCONV_FORMS)
@pytest.mark.parametrize(("size", "c_in", "c_out"), [(7, 12, 5), (14, 6, 1), (3, 4, 4)])
def test_upconv_is_torch_conv_transpose_4_2_1(size, c_in, c_out, form, float64):
    x = normal64(0, (3, size, size, c_in))
    layer = UpConv(c_out, form=form)
    kernel = _kernel(layer, 1, x)
    y = jax.jit(layer.apply)({"params": {"kernel": kernel}}, x)
    ref = _torch_conv(UpConv, _nchw(x), torch.tensor(np.asarray(kernel)))
    assert y.shape == (3, 2 * size, 2 * size, c_out)
    assert_close64(y, ref.permute(0, 2, 3, 1).numpy())


@pytest.mark.parametrize("shape", [(4, 4, 16, 8), (4, 4, 1, 3), (100, 784), (5,)])
def test_dcgan_kernel_init_draws_flax_normal_bit_for_bit(shape):
    # Drawn flat and reshaped (a faster compilation): the values must be nn.initializers'.
    key = jax.random.key(3)
    expected = nn.initializers.normal(0.02)(key, shape)
    actual = dcgan_kernel_init(key, shape)
    assert actual.shape == shape and actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)
    assert float(jnp.std(actual)) > 0.01  # a draw, not zeros


def _count(params) -> int:
    return sum(math.prod(p.shape) for p in jax.tree.leaves(params))


def test_mlp_has_the_notes_architecture():
    G, D = make_models("mlp")
    z, images = jnp.zeros((2, 100)), jnp.zeros((2, 28, 28, 1))
    # Shapes only: an eager init would compile each layer's random draws one by one.
    g_vars = jax.eval_shape(lambda: G.init(jax.random.key(0), z, train=False))
    d_vars = jax.eval_shape(lambda: D.init(jax.random.key(1), images, train=False))
    widths = [100, 128, 256, 512, 1024, 784]
    dense = sum(a * b + b for a, b in itertools.pairwise(widths))
    batchnorm = 2 * (256 + 512 + 1024)  # after every hidden layer but the first
    assert _count(g_vars["params"]) == dense + batchnorm
    d_widths = [784, 512, 256, 1]
    assert _count(d_vars["params"]) == sum(a * b + b for a, b in itertools.pairwise(d_widths))
    assert "batch_stats" not in d_vars
    # PyTorch's default epsilon; PyTorch-GAN's BatchNorm1d(out_feat, 0.8) sets eps = 0.8.
    assert G.bn_epsilon == 1e-5
    assert make_models("mlp", bn_epsilon=0.8)[0].bn_epsilon == 0.8


@pytest.mark.parametrize("name", MODELS)
def test_models_map_noise_to_unit_range_images_and_images_to_logits(name):
    G, D = make_models(name)
    z = normal32(0, (5, 100))
    g_vars = _init(G, 1, z)
    images = _forward(G)(g_vars, z)
    assert images.shape == (5, 28, 28, 1)
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    d_vars = _init(D, 2, images)
    logits = _forward(D)(d_vars, images)
    assert logits.shape == (5,)
    tanh_g, _ = make_models(name, output="tanh")
    assert float(_forward(tanh_g)(g_vars, z).min()) < 0


def test_make_models_rejects_unknown_names():
    with pytest.raises(ValueError, match="mlp"):
        make_models("resnet")


CONV2D_CASES = [  # (layer, its stride, input size, c_in, c_out); both pad by 1
    *((DownConv, 2, *shape) for shape in [(28, 1, 6), (14, 6, 5), (4, 3, 2)]),
    *((SameConv, 1, *shape) for shape in [(7, 12, 12), (7, 3, 5), (4, 1, 2)]),
]


@pytest.mark.parametrize(("layer_class", "stride", "size", "c_in", "c_out"), CONV2D_CASES)
def test_downconv_and_sameconv_are_torch_conv2d(layer_class, stride, size, c_in, c_out, float64):
    # DownConv is Conv2d(c, o, 4, 2, 1), SameConv Conv2d(c, o, 3, 1, 1); the kernel's size is
    # the layer's own.
    x = normal64(0, (3, size, size, c_in))
    layer = layer_class(c_out)
    kernel = _kernel(layer, 1, x)
    y = jax.jit(layer.apply)({"params": {"kernel": kernel}}, x)
    ref = _torch_conv(layer_class, _nchw(x), torch.tensor(np.asarray(kernel)))
    assert y.shape == (3, size // stride, size // stride, c_out)
    assert_close64(y, ref.permute(0, 2, 3, 1).numpy())


def test_upconv_auto_form_is_the_one_with_the_smaller_intermediate(monkeypatch):
    # (h+1)(w+1) 4c patches against hw 16o columns: a DCGAN's 7x7x128 -> 64 layer is sub-pixel
    # (64 * 512 < 49 * 1024), its 14x14x64 -> 1 layer scatter (196 * 16 < 225 * 256).
    chosen = []
    for form in ("subpixel", "scatter"):
        form_fn = getattr(layers, f"_upconv_{form}")
        monkeypatch.setattr(layers, f"_upconv_{form}", _recorded(form_fn, form, chosen))
    for size, c_in, c_out in [(7, 128, 64), (14, 64, 1)]:
        x = jnp.zeros((2, size, size, c_in))
        jax.eval_shape(UpConv(c_out).init_with_output, jax.random.key(0), x)
    assert chosen == ["subpixel", "scatter"]
    with pytest.raises(ValueError, match="form must be"):
        UpConv(4, form="direct").init(jax.random.key(0), jnp.zeros((1, 3, 3, 2)))


def _recorded(fn, name, log):
    def recorded(*args):
        log.append(name)
        return fn(*args)

    return recorded


# Both orders of patch_matmul's kernel gradient: patches narrower (UpConv sub-pixel 4 * 2 <
# 4 * 5, scatter always; DownConv 16 * 1 < 32) and wider (SameConv 9 * 12 > 5; DownConv 16 * 6
# > 5) than the output; and both forms of UpConv.
@pytest.mark.parametrize(
    ("layer", "size", "c_in"),
    [
        (UpConv(5, form="subpixel"), 7, 2),
        (UpConv(5, form="scatter"), 7, 2),
        (UpConv(1, form="scatter"), 14, 6),
        (DownConv(32), 28, 1),
        (DownConv(5), 14, 6),
        (SameConv(5), 7, 12),
    ],
    ids=[
        "UpConv-subpixel",
        "UpConv-scatter",
        "UpConv-scatter-1",
        "DownConv-32",
        "DownConv-5",
        "SameConv",
    ],
)
def test_convolution_gradients_are_torch_autograds(layer, size, c_in, float64):
    # The layers' own backward pass (`patch_matmul` reorders the kernel gradient) against
    # PyTorch's autograd of the same convolution, for the input and the kernel.
    layer_class = type(layer)
    x = normal64(0, (3, size, size, c_in))
    kernel = _kernel(layer, 1, x)
    y_shape = jax.eval_shape(layer.apply, {"params": {"kernel": kernel}}, x).shape
    cotangent = normal64(2, y_shape)

    def objective(x, kernel):
        return jnp.sum(layer.apply({"params": {"kernel": kernel}}, x) * cotangent)

    x_grad, kernel_grad = jax.jit(jax.grad(objective, argnums=(0, 1)))(x, kernel)
    x_ref = _nchw(x).requires_grad_()
    kernel_ref = torch.tensor(np.asarray(kernel), requires_grad=True)
    y_ref = _torch_conv(layer_class, x_ref, kernel_ref)
    (y_ref * _nchw(cotangent)).sum().backward()
    assert_close64(x_grad, x_ref.grad.permute(0, 2, 3, 1).numpy())
    assert_close64(kernel_grad, kernel_ref.grad.numpy())


@pytest.mark.parametrize("transpose", ["narrower", "patches"])
@pytest.mark.parametrize(("k", "n"), [(3, 8), (12, 5)], ids=["narrow patches", "wide patches"])
def test_patch_matmul_has_the_value_and_gradients_of_a_matmul(k, n, transpose, float64):
    patches, kernel, cotangent = (
        normal64(0, (2, 5, 5, k)),
        normal64(1, (k, n)),
        normal64(2, (2, 5, 5, n)),
    )
    matmul = jax.jit(functools.partial(patch_matmul, transpose=transpose))
    y, pullback = jax.vjp(matmul, patches, kernel)
    y_ref, pullback_ref = jax.vjp(jnp.matmul, patches, kernel)
    assert_close64(y, y_ref)
    for grad, grad_ref in zip(pullback(cotangent), pullback_ref(cotangent), strict=True):
        assert grad.shape == grad_ref.shape
        assert_close64(grad, grad_ref)
    with pytest.raises(ValueError, match="transpose must be"):
        patch_matmul(patches, kernel, transpose="grad")


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
def test_dcgan_extra_layers_add_3x3_blocks_at_7x7_to_both_networks(conditional):
    num_classes = 10 if conditional else None
    z, images = jnp.zeros((2, 100)), jnp.zeros((2, 28, 28, 1))
    labels = (jnp.zeros(2, jnp.int32),) if conditional else ()
    counts = []
    for extra in (0, 2):
        G, D = make_models("dcgan", features=8, num_classes=num_classes, extra_layers=extra)
        g_vars = jax.eval_shape(lambda G=G: G.init(jax.random.key(0), z, *labels, train=False))
        d_vars = jax.eval_shape(lambda D=D: D.init(jax.random.key(1), images, *labels, train=False))
        counts.append((_count(g_vars), _count(d_vars)))
    # Each block: a 3x3 convolution 16 -> 16 channels (no bias) and a BatchNorm of 16 features
    # (scale, bias, running mean and variance).
    block = 3 * 3 * 16 * 16 + 4 * 16
    assert counts[1] == (counts[0][0] + 2 * block, counts[0][1] + 2 * block)
    with pytest.raises(ValueError, match="extra_layers"):
        make_models("mlp", extra_layers=1)
    with pytest.raises(ValueError, match="extra_layers"):
        make_models("dcgan", extra_layers=-1)


@pytest.mark.parametrize("name", MODELS)
def test_conditional_models_take_labels_and_use_them(name):
    G, D = make_models(name, num_classes=10, features=8)
    z = normal32(0, (4, 100))
    labels = jnp.array([0, 3, 7, 9])
    g_vars = _init(G, 1, z, labels)
    images = _forward(G)(g_vars, z, labels)
    assert images.shape == (4, 28, 28, 1)
    # The label changes the image for the same noise (by far more than rounding: at init the
    # DCGAN's outputs sit near 0.5, where an ulp is 6e-8), and the logit for the same image.
    other = _forward(G)(g_vars, z, (labels + 1) % 10)
    assert float(jnp.abs(images - other).max()) > 1e-5
    d_vars = _init(D, 2, images, labels)
    assert d_vars["params"]["projection"]["embedding"].shape[0] == 10
    logits = _forward(D)(d_vars, images, labels)
    assert logits.shape == (4,)
    assert float(jnp.abs(logits - _forward(D)(d_vars, images, (labels + 1) % 10)).max()) > 0
    # An out-of-range label cannot pass unnoticed: the embedding lookup yields NaN.
    assert bool(jnp.isnan(_forward(D)(d_vars, images, jnp.array([0, 1, 2, 10]))[3]))


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


# bfloat16 keeps 8 significant bits: each matmul rounds both operands and its output, a relative
# error of at most 3 x 2^-8 = 1.2% per layer, and the deepest network here has 5 layers: 6%.
BF16_RTOL = 5 * 3 * 2**-8


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
@pytest.mark.parametrize("name", MODELS)
def test_bfloat16_models_compute_in_bfloat16_and_stay_close_to_float32(name, conditional):
    num_classes = 10 if conditional else None
    G, D = make_models(name, features=8, num_classes=num_classes)
    Gb, Db = make_models(name, features=8, num_classes=num_classes, dtype="bfloat16")
    z = normal32(0, (16, 100))
    labels = (jnp.arange(16) % 10,) if conditional else ()
    g_vars = _init(G, 1, z, *labels)
    images = _forward(G)(g_vars, z, *labels)
    d_vars = _init(D, 2, images, *labels)
    for module, low, variables, x in ((G, Gb, g_vars, z), (D, Db, d_vars, images)):
        exact = _forward(module)(variables, x, *labels)
        mixed = _forward(low)(variables, x, *labels)
        # What leaves each network is float32: images for D and the loss, logits for the loss.
        assert exact.dtype == mixed.dtype == jnp.float32
        # The matmuls run in bfloat16 (a dtype ignored somewhere would also give 0 error below).
        forward = functools.partial(low.apply, train=False)
        assert "bf16" in str(jax.make_jaxpr(forward)(variables, x, *labels))
        error = float(jnp.abs(mixed - exact).max() / jnp.abs(exact).max())
        assert 0 < error < BF16_RTOL, type(module).__name__
    with pytest.raises(ValueError, match="dtype must be None or one of"):
        make_models(name, dtype="float16")


@pytest.mark.parametrize("name", MODELS)
def test_a_bfloat16_training_step_keeps_parameters_and_adam_in_float32(name):
    from jaxgan import adam, create_state, make_train_step

    real = jnp.asarray(np.random.default_rng(3).random((16, 28, 28, 1), np.float32))
    noise = normal32(4, (16, 100))
    tx = adam()
    models = {  # float32: the default, no compute dtype
        "float32": make_models(name, features=8),
        "bfloat16": make_models(name, features=8, dtype="bfloat16"),
    }

    @jax.jit  # both precisions' initialization and step, compiled together in one program
    def first_steps(key, real, noise):
        results = {}
        for precision, (G, D) in models.items():
            state = create_state(key, G, D, tx, tx)
            results[precision] = make_train_step("two_pass", G, D, tx, tx)(state, real, noise)
        return results

    results = first_steps(jax.random.key(0), real, noise)
    state, metrics = results["bfloat16"]
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32, jax.tree_util.keystr(path)
    # The same step, up to bfloat16's rounding of the forward passes (losses are O(1)).
    for key in ("g_loss", "d_loss"):
        np.testing.assert_allclose(metrics[key], results["float32"][1][key], rtol=BF16_RTOL)
