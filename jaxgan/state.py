"""The one pytree that holds a GAN in training, and how to build it."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

Params = Any  # a pytree of arrays: a flax `params` collection
BatchStats = Any  # a flax `batch_stats` collection (empty for networks without BatchNorm)

# The optimizer the notes and PyTorch-GAN use for both networks.
DEFAULT_LEARNING_RATE = 2e-4
DEFAULT_BETAS = (0.5, 0.999)


def adam(
    learning_rate: float = DEFAULT_LEARNING_RATE,
    b1: float = DEFAULT_BETAS[0],
    b2: float = DEFAULT_BETAS[1],
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """`torch.optim.Adam(lr=2e-4, betas=(0.5, 0.999))` as optax computes it."""
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


@flax.struct.dataclass
class GANState:
    """Everything that changes during training; modules and optimizers stay outside.

    Attributes:
      step: int32 scalar, the number of completed training steps.
      g_params: the generator's parameters.
      d_params: the discriminator's parameters.
      g_batch_stats: the generator's BatchNorm running statistics.
      d_batch_stats: the discriminator's BatchNorm running statistics (`{}` if it has none).
      g_opt_state: the generator optimizer's state (Adam's moments and step count).
      d_opt_state: the discriminator optimizer's state.
    """

    step: jax.Array
    g_params: Params
    d_params: Params
    g_batch_stats: BatchStats
    d_batch_stats: BatchStats
    g_opt_state: optax.OptState
    d_opt_state: optax.OptState


def create_state(
    key: jax.Array,
    generator: nn.Module,
    discriminator: nn.Module,
    g_optimizer: optax.GradientTransformation,
    d_optimizer: optax.GradientTransformation,
) -> GANState:
    """Initializes both networks and both optimizers.

    Args:
      key: PRNG key; split into one key per network.
      generator: a module with `latent_dim` and `image_shape` attributes (and `num_classes`,
        for a conditional one), called as `generator(z[, labels], train=...)`.
      discriminator: a module called as `discriminator(images[, labels], train=...)`.
      g_optimizer: the generator's optax optimizer (`adam()` for the notes' setting).
      d_optimizer: the discriminator's optax optimizer.

    Returns:
      A `GANState` at step 0.
    """

    def init(key: jax.Array) -> GANState:
        g_key, d_key = jax.random.split(key)
        # A conditional pair (num_classes set) is initialized with labels too.
        conditional = getattr(generator, "num_classes", None) is not None
        labels = (jnp.zeros(1, jnp.int32),) if conditional else ()
        z = jnp.zeros((1, generator.latent_dim), jnp.float32)
        g_vars = generator.init(g_key, z, *labels, train=False)
        images = jnp.zeros((1, *generator.image_shape), jnp.float32)
        d_vars = discriminator.init(d_key, images, *labels, train=False)
        return GANState(
            step=jnp.zeros((), jnp.int32),
            g_params=g_vars["params"],
            d_params=d_vars["params"],
            g_batch_stats=g_vars.get("batch_stats", {}),
            d_batch_stats=d_vars.get("batch_stats", {}),
            g_opt_state=g_optimizer.init(g_vars["params"]),
            d_opt_state=d_optimizer.init(d_vars["params"]),
        )

    # One compiled program (run op by op, a DCGAN's initialization compiles each of its hundreds
    # of operations apart: seconds longer). A closure, so that modules need not be hashable.
    return jax.jit(init)(key)
