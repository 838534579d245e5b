"""Generators and discriminators for 28x28x1 images (NHWC, pixels in `[0, 1]` by default).

Two families, each a (generator, discriminator) pair that `make_models` builds by name:

- `mlp`: the notes' network, as the widely used PyTorch MNIST GAN (PyTorch-GAN's `gan.py`) has
  it. G: latent 100 -> 128 -> 256 -> 512 -> 1024 -> 784, LeakyReLU(0.2), BatchNorm after every
  hidden layer but the first, sigmoid output reshaped to 28x28x1. D: 784 -> 512 -> 256 -> 1 with
  LeakyReLU(0.2). That code writes `nn.BatchNorm1d(out_feat, 0.8)`, whose second positional
  argument is `eps`, so its BatchNorm runs with epsilon 0.8; jaxgan keeps that as the `mlp`
  default so the parity suite reproduces the model people actually train.
- `dcgan`: the PyTorch DCGAN example's design scaled to 28x28: G is a stack of transposed
  convolutions 1x1 -> 7x7 -> 14x14 -> 28x28 with BatchNorm and ReLU; D mirrors it with strided
  convolutions, BatchNorm and LeakyReLU(0.2), and a final 7x7 convolution to one logit. The
  convolutions are written as matmuls (`UpConv`, `DownConv`, and dense layers for the 7x7
  ones), which compute the same sums as PyTorch's layers and run fast on XLA:CPU.

Discriminators return logits of shape `[B]`; the sigmoid belongs to the loss (`jaxgan.losses`).
Every BatchNorm is `BatchNorm` below, which follows PyTorch's convention exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

MODELS = ("mlp", "dcgan")
Output = Literal["sigmoid", "tanh"]
IMAGE_SHAPE = (28, 28, 1)


class BatchNorm(nn.Module):
    """Batch normalization over all axes but the last, with PyTorch's semantics.

    Training mode normalizes with the batch mean and the biased batch variance, and updates the
    running statistics as `torch.nn.BatchNorm{1,2}d` does:
    `running = (1 - momentum) * running + momentum * batch_stat`, where the variance that enters
    the running average is the *unbiased* one (`n / (n - 1)` times the biased one). Flax's own
    `BatchNorm` averages the biased variance and counts momentum the other way round; this module
    exists so that jaxgan's running statistics are PyTorch's, not merely close to them.

    Attributes:
      momentum: PyTorch's momentum, the weight of the new batch statistic (PyTorch default 0.1;
        flax's `momentum=0.9` is this module's `momentum=0.1`).
      epsilon: added to the variance before the square root.
      scale_init: initializer of the scale (PyTorch's `weight`).
    """

    momentum: float = 0.1
    epsilon: float = 1e-5
    scale_init: nn.initializers.Initializer = nn.initializers.ones

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", self.scale_init, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,))
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,))
        if train:
            axes = tuple(range(x.ndim - 1))
            mean = x.mean(axes, keepdims=True)
            var = jnp.square(x - mean).mean(axes, keepdims=True)
            if not self.is_initializing():
                n = x.size // features
                m = self.momentum
                running_mean.value = (1 - m) * running_mean.value + m * mean.reshape(-1)
                unbiased = var.reshape(-1) * (n / (n - 1))
                running_var.value = (1 - m) * running_var.value + m * unbiased
        else:
            mean, var = running_mean.value, running_var.value

        # Broadcast per-feature vectors explicitly (implicit rank promotion hides shape bugs).
        def per_feature(v):
            return jnp.reshape(v, (1,) * (x.ndim - 1) + (features,))

        inv_std = jax.lax.rsqrt(per_feature(var) + self.epsilon)
        return (x - per_feature(mean)) * inv_std * per_feature(scale) + per_feature(bias)


def _torch_linear_bias_init(fan_in: int) -> nn.initializers.Initializer:
    bound = 1 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# PyTorch's nn.Linear default: kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
_torch_linear_kernel_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
# The DCGAN paper's initialization: N(0, 0.02) weights, BatchNorm scale N(1, 0.02).
_dcgan_kernel_init = nn.initializers.normal(0.02)


def _dcgan_scale_init(key, shape, dtype=jnp.float32):
    return 1 + 0.02 * jax.random.normal(key, shape, dtype)


def _linear(features: int, fan_in: int) -> nn.Dense:
    return nn.Dense(
        features,
        kernel_init=_torch_linear_kernel_init,
        bias_init=_torch_linear_bias_init(fan_in),
    )


def _activate_output(x: jax.Array, output: Output) -> jax.Array:
    if output == "sigmoid":
        return jax.nn.sigmoid(x)
    if output == "tanh":
        return jnp.tanh(x)
    raise ValueError(f"output must be 'sigmoid' or 'tanh', got {output!r}")


class MLPGenerator(nn.Module):
    """PyTorch-GAN's MNIST generator: `z -> 128 -> 256 -> 512 -> 1024 -> 784 -> 28x28x1`."""

    latent_dim: int = 100
    hidden: Sequence[int] = (128, 256, 512, 1024)
    image_shape: tuple[int, int, int] = IMAGE_SHAPE
    bn_epsilon: float = 0.8
    bn_momentum: float = 0.1
    output: Output = "sigmoid"

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        x, fan_in = z, self.latent_dim
        for i, width in enumerate(self.hidden):
            x = _linear(width, fan_in)(x)
            if i > 0:
                x = BatchNorm(self.bn_momentum, self.bn_epsilon)(x, train)
            x, fan_in = nn.leaky_relu(x, 0.2), width
        x = _linear(math.prod(self.image_shape), fan_in)(x)
        return _activate_output(x, self.output).reshape(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    """PyTorch-GAN's MNIST discriminator: `784 -> 512 -> 256 -> 1` logit."""

    hidden: Sequence[int] = (512, 256)

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = True) -> jax.Array:
        x = images.reshape(images.shape[0], -1)
        fan_in = x.shape[-1]
        for width in self.hidden:
            x, fan_in = nn.leaky_relu(_linear(width, fan_in)(x), 0.2), width
        return _linear(1, fan_in)(x)[:, 0]


class UpConv(nn.Module):
    """PyTorch's `ConvTranspose2d(c, features, 4, stride=2, padding=1, bias=False)`, NHWC.

    Doubles the spatial size. The kernel is stored as `[ky, kx, c_in, c_out]` with
    `kernel[ky, kx, c, o] = torch_weight[c, o, ky, kx]`. It is computed in sub-pixel form: output
    pixel `(2m + a, 2n + b)` sums input pixels `m + r - 1 + a` (`r` in {0, 1}) against kernel tap
    `3 - 2r - a`, so the four output phases are one matmul over the 2x2 patches of the padded
    input followed by an interleave. That is the same sum as a transposed convolution, and on
    XLA:CPU its gradient is several times faster than that of `lax.conv_transpose`, whose
    kernel gradient falls back to a slow convolution there.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        kernel = self.param("kernel", _dcgan_kernel_init, (4, 4, c, self.features))
        tap = 3 - 2 * jnp.arange(2)[:, None] - jnp.arange(2)[None, :]  # tap[r, a]
        # phase_kernel[(r, t, c), (a, b, o)] = kernel[tap[r, a], tap[t, b], c, o]
        phase_kernel = kernel[tap[:, None, :, None], tap[None, :, None, :]]  # [r, t, a, b, c, o]
        phase_kernel = phase_kernel.transpose(0, 1, 4, 2, 3, 5).reshape(4 * c, 4 * self.features)
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        patches = jnp.concatenate(
            [padded[:, r : r + h + 1, t : t + w + 1] for r in range(2) for t in range(2)], -1
        )
        y = (patches @ phase_kernel).reshape(b, h + 1, w + 1, 2, 2, self.features)
        rows = [
            jnp.stack([y[:, a : a + h, c_ : c_ + w, a, c_] for c_ in range(2)], axis=3)
            for a in range(2)
        ]
        return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, self.features)


class DownConv(nn.Module):
    """PyTorch's `Conv2d(c, features, 4, stride=2, padding=1, bias=False)`, NHWC.

    Halves the spatial size (which must be even). The kernel is stored as flax's `nn.Conv`
    stores it, `[ky, kx, c_in, c_out]` with `kernel[ky, kx, c, o] = torch_weight[o, c, ky, kx]`.
    It is computed as one matmul: the padded input is folded 2x2 into channels (space to depth),
    after which the strided 4x4 convolution is a 2x2 convolution whose four shifted windows are
    concatenated. The same sum as `lax.conv_general_dilated`; but inside `lax.scan`, XLA:CPU
    runs convolutions through a slow generic loop (measured: a DCGAN discriminator's gradient
    took 1350 ms per step in a scan against 41 ms outside one), and matmuls do not suffer this.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        kernel = self.param("kernel", _dcgan_kernel_init, (4, 4, c, self.features))
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        hb, wb = h // 2 + 1, w // 2 + 1
        folded = padded.reshape(b, hb, 2, wb, 2, c).transpose(0, 1, 3, 2, 4, 5)
        folded = folded.reshape(b, hb, wb, 4 * c)  # channels ordered (ry, rx, c)
        windows = [
            folded[:, dy : dy + h // 2, dx : dx + w // 2] for dy in range(2) for dx in range(2)
        ]
        patches = jnp.concatenate(windows, axis=-1)  # channels ordered (dy, dx, ry, rx, c)
        # Tap ky = 2 dy + ry and kx = 2 dx + rx, reordered to match the patches.
        folded_kernel = kernel.reshape(2, 2, 2, 2, c, self.features).transpose(0, 2, 1, 3, 4, 5)
        return patches @ folded_kernel.reshape(16 * c, self.features)


class DCGANGenerator(nn.Module):
    """Transposed-convolution generator: `z -> 7x7x2f -> 14x14xf -> 28x28x1`."""

    latent_dim: int = 100
    features: int = 64
    image_shape: tuple[int, int, int] = IMAGE_SHAPE
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.1
    output: Output = "sigmoid"

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        def bn(x):
            return BatchNorm(self.bn_momentum, self.bn_epsilon, _dcgan_scale_init)(x, train)

        # ConvTranspose2d(latent, 2f, 7, 1, 0) on a 1x1 input is a dense layer to 7x7x2f.
        x = nn.Dense(7 * 7 * 2 * self.features, use_bias=False, kernel_init=_dcgan_kernel_init)(z)
        x = nn.relu(bn(x.reshape(-1, 7, 7, 2 * self.features)))
        x = nn.relu(bn(UpConv(self.features)(x)))  # 14x14
        x = UpConv(self.image_shape[-1])(x)  # 28x28
        return _activate_output(x, self.output)


class DCGANDiscriminator(nn.Module):
    """Strided-convolution discriminator: `28x28x1 -> 14x14xf -> 7x7x2f -> 1` logit."""

    features: int = 64
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.1

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = True) -> jax.Array:
        x = nn.leaky_relu(DownConv(self.features)(images), 0.2)  # 14x14
        x = DownConv(2 * self.features)(x)  # 7x7
        x = BatchNorm(self.bn_momentum, self.bn_epsilon, _dcgan_scale_init)(x, train)
        x = nn.leaky_relu(x, 0.2)
        # Conv2d(2f, 1, 7, 1, 0) on a 7x7 input is a dense layer on the flattened (h, w, c).
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(1, use_bias=False, kernel_init=_dcgan_kernel_init)(x)[:, 0]


def make_models(
    name: str,
    *,
    latent_dim: int = 100,
    output: Output = "sigmoid",
    bn_epsilon: float | None = None,
    bn_momentum: float = 0.1,
    features: int = 64,
) -> tuple[nn.Module, nn.Module]:
    """Builds a (generator, discriminator) pair by name.

    Args:
      name: `"mlp"` or `"dcgan"`.
      latent_dim: size of the noise vector.
      output: the generator's last activation, `"sigmoid"` for `[0, 1]` images (`ToTensor`),
        `"tanh"` for `[-1, 1]`.
      bn_epsilon: BatchNorm epsilon; `None` takes the family's default (0.8 for `mlp`, as in
        PyTorch-GAN; 1e-5, PyTorch's default, for `dcgan`).
      bn_momentum: BatchNorm momentum in PyTorch's convention (see `BatchNorm`).
      features: base width of the `dcgan` convolutions (ignored by `mlp`).

    Returns:
      `(generator, discriminator)`, flax modules called as `module(x, train=...)`.
    """
    if name == "mlp":
        eps = 0.8 if bn_epsilon is None else bn_epsilon
        return (
            MLPGenerator(latent_dim, bn_epsilon=eps, bn_momentum=bn_momentum, output=output),
            MLPDiscriminator(),
        )
    if name == "dcgan":
        eps = 1e-5 if bn_epsilon is None else bn_epsilon
        return (
            DCGANGenerator(
                latent_dim, features, bn_epsilon=eps, bn_momentum=bn_momentum, output=output
            ),
            DCGANDiscriminator(features, bn_epsilon=eps, bn_momentum=bn_momentum),
        )
    raise ValueError(f"unknown model {name!r}; choose one of {list(MODELS)}")
