"""Generators and discriminators for 28x28x1 images (NHWC, pixels in `[0, 1]` by default).

Two families, each a (generator, discriminator) pair that `make_models` builds by name:

- `mlp`: the notes' network, as the widely used PyTorch MNIST GAN (PyTorch-GAN's `gan.py`) has
  it. G: latent 100 -> 128 -> 256 -> 512 -> 1024 -> 784, LeakyReLU(0.2), BatchNorm after every
  hidden layer but the first, sigmoid output reshaped to 28x28x1. D: 784 -> 512 -> 256 -> 1 with
  LeakyReLU(0.2). BatchNorm's epsilon is PyTorch's default, 1e-5; `bn_epsilon=0.8` reproduces
  `gan.py`, whose `nn.BatchNorm1d(out_feat, 0.8)` passes 0.8 as `eps` (its second positional
  argument), not as momentum.
- `dcgan`: the PyTorch DCGAN example's design scaled to 28x28: G is a stack of transposed
  convolutions 1x1 -> 7x7 -> 14x14 -> 28x28 with BatchNorm and ReLU; D mirrors it with strided
  convolutions, BatchNorm and LeakyReLU(0.2), and a final 7x7 convolution to one logit. The
  convolutions are written as matmuls (`UpConv`, `DownConv`, and dense layers for the 7x7
  ones), which compute the same sums as PyTorch's layers and run fast on XLA:CPU.

Both families have class-conditional versions (`num_classes`): G concatenates a learned label
embedding to its noise, as PyTorch-GAN's `cgan.py` does, and D is a projection discriminator
(Miyato & Koyama, 2018): its logit is an unconditional realness term plus `<embed(y), h>` on its
last hidden features `h`. Concatenating the label to D's input instead asks D to learn the
interaction between label and image through its first layer; the projection writes in the form
the optimal conditional discriminator's logit takes (a log density ratio that splits into an
image term and a label-image match term), and is the better-behaved choice in practice.

Discriminators return logits of shape `[B]`; the sigmoid belongs to the loss (`jaxgan.losses`).
Every BatchNorm is `jaxgan.layers.BatchNorm`, which follows PyTorch's convention exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.choices import (
    BN_EPSILON,
    COMPUTE_DTYPES,
    MODEL_NAMES,
    OUTPUTS,
    PIXEL_RANGES,
    PixelRange,
)
from jaxgan.layers import (
    BatchNorm,
    DownConv,
    SameConv,
    UpConv,
    dcgan_kernel_init,
    dcgan_scale_init,
    torch_linear_bias_init,
    torch_linear_kernel_init,
)

MODELS = MODEL_NAMES
Output = Literal["sigmoid", "tanh"]
IMAGE_SHAPE = (28, 28, 1)


def to_unit_range(images: jax.Array, pixel_range: PixelRange) -> jax.Array:
    """Maps images in `pixel_range` to `[0, 1]` (for display and for the classifier)."""
    if pixel_range not in OUTPUTS:
        raise ValueError(f"pixel_range must be one of {list(PIXEL_RANGES)}, got {pixel_range!r}")
    return (images + 1) / 2 if pixel_range == "symmetric" else images


def _linear(features: int, fan_in: int, dtype: str | None) -> nn.Dense:
    return nn.Dense(
        features,
        kernel_init=torch_linear_kernel_init,
        bias_init=torch_linear_bias_init(fan_in),
        dtype=dtype,
    )


def _activate_output(x: jax.Array, output: Output) -> jax.Array:
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # images leave G in float32 at least
    if output == "sigmoid":
        return jax.nn.sigmoid(x)
    if output == "tanh":
        return jnp.tanh(x)
    raise ValueError(f"output must be 'sigmoid' or 'tanh', got {output!r}")


def _condition(z: jax.Array, labels: jax.Array | None, num_classes: int | None) -> jax.Array:
    """Concatenates a learned label embedding in front of the noise (PyTorch-GAN's `cgan.py`:
    `torch.cat((self.label_emb(labels), noise), -1)` with `nn.Embedding(n, n)`)."""
    _check_labels(labels, num_classes)
    if num_classes is None:
        return z
    embedding = nn.Embed(num_classes, num_classes, embedding_init=nn.initializers.normal(1.0))
    return jnp.concatenate([embedding(labels), z], axis=-1)


def _project(h: jax.Array, labels: jax.Array | None, num_classes: int | None, init) -> jax.Array:
    """The projection discriminator's class term `<embed(y), h>` (Miyato & Koyama, 2018)."""
    _check_labels(labels, num_classes)
    if num_classes is None:
        return jnp.zeros(h.shape[:1], h.dtype)
    embedding = nn.Embed(num_classes, h.shape[-1], embedding_init=init, name="projection")
    return jnp.sum(embedding(labels) * h, axis=-1)


def _logits(x: jax.Array) -> jax.Array:
    """D's logits, in float32 at least: the loss is never computed in low precision."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_labels(labels: jax.Array | None, num_classes: int | None) -> None:
    if num_classes is None and labels is not None:
        raise ValueError("this model is unconditional; build it with num_classes to pass labels")
    if num_classes is not None and labels is None:
        raise ValueError(f"this model is conditional on {num_classes} classes: pass labels")


class MLPGenerator(nn.Module):
    """PyTorch-GAN's MNIST generator: `z -> 128 -> 256 -> 512 -> 1024 -> 784 -> 28x28x1`."""

    latent_dim: int = 100
    hidden: Sequence[int] = (128, 256, 512, 1024)
    image_shape: tuple[int, int, int] = IMAGE_SHAPE
    bn_epsilon: float = BN_EPSILON
    bn_momentum: float = 0.1
    bn_groups: int = 1  # batch groups with their own BatchNorm statistics (see BatchNorm)
    output: Output = "sigmoid"
    num_classes: int | None = None  # conditional: G(z, labels)
    dtype: str | None = None  # what the matmuls compute in (see make_models)

    @nn.compact
    def __call__(
        self, z: jax.Array, labels: jax.Array | None = None, train: bool = True
    ) -> jax.Array:
        x = _condition(z, labels, self.num_classes)
        fan_in = x.shape[-1]
        for i, width in enumerate(self.hidden):
            x = _linear(width, fan_in, self.dtype)(x)
            if i > 0:
                x = BatchNorm(self.bn_momentum, self.bn_epsilon, groups=self.bn_groups)(x, train)
            x, fan_in = nn.leaky_relu(x, 0.2), width
        x = _linear(math.prod(self.image_shape), fan_in, self.dtype)(x)
        return _activate_output(x, self.output).reshape(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    """PyTorch-GAN's MNIST discriminator: `784 -> 512 -> 256 -> 1` logit."""

    hidden: Sequence[int] = (512, 256)
    num_classes: int | None = None  # conditional: D(images, labels), projection form
    dtype: str | None = None  # what the matmuls compute in (see make_models)

    @nn.compact
    def __call__(
        self, images: jax.Array, labels: jax.Array | None = None, train: bool = True
    ) -> jax.Array:
        x = images.reshape(images.shape[0], -1)
        fan_in = x.shape[-1]
        for width in self.hidden:
            x, fan_in = nn.leaky_relu(_linear(width, fan_in, self.dtype)(x), 0.2), width
        class_term = _project(x, labels, self.num_classes, torch_linear_bias_init(fan_in))
        return _logits(_linear(1, fan_in, self.dtype)(x)[:, 0] + class_term)


class DCGANGenerator(nn.Module):
    """Transposed-convolution generator: `z -> 7x7x2f -> 14x14xf -> 28x28x1`, with
    `extra_layers` 3x3 convolution blocks (convolution, BatchNorm, ReLU) at `7x7x2f` before
    the first upsampling."""

    latent_dim: int = 100
    features: int = 64
    image_shape: tuple[int, int, int] = IMAGE_SHAPE
    bn_epsilon: float = BN_EPSILON
    bn_momentum: float = 0.1
    bn_groups: int = 1  # batch groups with their own BatchNorm statistics (see BatchNorm)
    output: Output = "sigmoid"
    num_classes: int | None = None  # conditional: G(z, labels)
    dtype: str | None = None  # what the matmuls compute in (see make_models)
    extra_layers: int = 0  # 3x3 blocks at 7x7 (see make_models)

    @nn.compact
    def __call__(
        self, z: jax.Array, labels: jax.Array | None = None, train: bool = True
    ) -> jax.Array:
        def bn(x):
            bn = BatchNorm(self.bn_momentum, self.bn_epsilon, dcgan_scale_init, self.bn_groups)
            return bn(x, train)

        x = _condition(z, labels, self.num_classes)
        # ConvTranspose2d(latent, 2f, 7, 1, 0) on a 1x1 input is a dense layer to 7x7x2f.
        x = nn.Dense(7 * 7 * 2 * self.features, use_bias=False, kernel_init=dcgan_kernel_init,
                     dtype=self.dtype)(x)  # fmt: skip
        x = nn.relu(bn(x.reshape(-1, 7, 7, 2 * self.features)))
        for _ in range(self.extra_layers):
            x = nn.relu(bn(SameConv(2 * self.features, self.dtype)(x)))
        x = nn.relu(bn(UpConv(self.features, self.dtype)(x)))  # 14x14
        x = UpConv(self.image_shape[-1], self.dtype)(x)  # 28x28
        return _activate_output(x, self.output)


class DCGANDiscriminator(nn.Module):
    """Strided-convolution discriminator: `28x28x1 -> 14x14xf -> 7x7x2f -> 1` logit, with
    `extra_layers` 3x3 convolution blocks (convolution, BatchNorm, LeakyReLU) at `7x7x2f`
    before the last layer."""

    features: int = 64
    bn_epsilon: float = BN_EPSILON
    bn_momentum: float = 0.1
    bn_groups: int = 1  # batch groups with their own BatchNorm statistics (see BatchNorm)
    num_classes: int | None = None  # conditional: D(images, labels), projection form
    dtype: str | None = None  # what the matmuls compute in (see make_models)
    extra_layers: int = 0  # 3x3 blocks at 7x7 (see make_models)

    @nn.compact
    def __call__(
        self, images: jax.Array, labels: jax.Array | None = None, train: bool = True
    ) -> jax.Array:
        def bn(x):
            bn = BatchNorm(self.bn_momentum, self.bn_epsilon, dcgan_scale_init, self.bn_groups)
            return bn(x, train)

        x = nn.leaky_relu(DownConv(self.features, self.dtype)(images), 0.2)  # 14x14
        x = nn.leaky_relu(bn(DownConv(2 * self.features, self.dtype)(x)), 0.2)  # 7x7
        for _ in range(self.extra_layers):
            x = nn.leaky_relu(bn(SameConv(2 * self.features, self.dtype)(x)), 0.2)
        # Conv2d(2f, 1, 7, 1, 0) on a 7x7 input is a dense layer on the flattened (h, w, c).
        x = x.reshape(x.shape[0], -1)
        class_term = _project(x, labels, self.num_classes, dcgan_kernel_init)
        dense = nn.Dense(1, use_bias=False, kernel_init=dcgan_kernel_init, dtype=self.dtype)
        return _logits(dense(x)[:, 0] + class_term)


def make_models(
    name: str,
    *,
    latent_dim: int = 100,
    output: Output = "sigmoid",
    bn_epsilon: float = BN_EPSILON,
    bn_momentum: float = 0.1,
    features: int = 64,
    num_classes: int | None = None,
    bn_groups: int = 1,
    dtype: str | None = None,
    extra_layers: int = 0,
) -> tuple[nn.Module, nn.Module]:
    """Builds a (generator, discriminator) pair by name.

    Args:
      name: `"mlp"` or `"dcgan"`.
      latent_dim: size of the noise vector.
      output: the generator's last activation, `"sigmoid"` for `[0, 1]` images (`ToTensor`),
        `"tanh"` for `[-1, 1]`.
      bn_epsilon: BatchNorm epsilon, PyTorch's default 1e-5; PyTorch-GAN's `gan.py` runs the
        `mlp` with 0.8.
      bn_momentum: BatchNorm momentum in PyTorch's convention (see `BatchNorm`).
      bn_groups: 1 for statistics over the whole batch; `n` for statistics per `1/n` of the
        batch, as PyTorch DDP has per replica when the batch is sharded over `n` devices.
      features: base width of the `dcgan` convolutions (ignored by `mlp`).
      num_classes: `None` for a plain GAN; a class count for a class-conditional pair, where
        G takes `(z, labels)` (label embedding concatenated to the noise) and D takes
        `(images, labels)` (projection discriminator).
      dtype: what the matmuls and convolutions compute in: None for the parameters' dtype
        (float32, or float64 in the parity suite), `"bfloat16"` for mixed precision, where the
        parameters, BatchNorm's statistics, G's output activation and D's logits (so the loss
        and Adam) stay float32.
      extra_layers: `dcgan` only: blocks of a 3x3 convolution (stride 1, padding 1, no bias),
        BatchNorm and the network's activation added to both networks at 7x7, in G after its
        first block and in D before its last layer. 0 is the PyTorch DCGAN example's pair,
        scaled to 28x28; the DCGAN recipe uses 3 (docs/dcgan.md).

    Returns:
      `(generator, discriminator)`, flax modules called as `G(z[, labels], train=...)` and
      `D(images[, labels], train=...)`.
    """
    if num_classes is not None and num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if not bn_epsilon > 0:
        raise ValueError(f"bn_epsilon must be positive, got {bn_epsilon}")
    if dtype is not None and dtype not in COMPUTE_DTYPES:
        raise ValueError(f"dtype must be None or one of {list(COMPUTE_DTYPES)}, got {dtype!r}")
    if extra_layers < 0 or (extra_layers and name != "dcgan"):
        raise ValueError(
            f"extra_layers must be 0, or a positive count for the dcgan, got {extra_layers} "
            f"for {name!r}"
        )
    bn = {"bn_epsilon": bn_epsilon, "bn_momentum": bn_momentum, "bn_groups": bn_groups}
    common = {"num_classes": num_classes, "dtype": dtype}
    extra = {"extra_layers": extra_layers}
    if name == "mlp":
        return (
            MLPGenerator(latent_dim, output=output, **common, **bn),
            MLPDiscriminator(**common),
        )
    if name == "dcgan":
        return (
            DCGANGenerator(latent_dim, features, output=output, **common, **bn, **extra),
            DCGANDiscriminator(features, **common, **bn, **extra),
        )
    raise ValueError(f"unknown model {name!r}; choose one of {list(MODELS)}")
