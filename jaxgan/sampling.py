"""Drawing images from a generator: the one sampling path of the library, the training loop,
the evaluation and the command line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.state import GANState

# A generator's variables, `{"params": ..., "batch_stats": ...}`, or the GANState holding them.
Variables = GANState | dict[str, Any]


def generator_variables(state: Variables) -> dict[str, Any]:
    """`{"params", "batch_stats"}` of the generator in a `GANState` (a dict passes through)."""
    if isinstance(state, GANState):
        return {"params": state.g_params, "batch_stats": state.g_batch_stats}
    return state


def generate(generator: nn.Module, state: Variables, noise) -> jax.Array:
    """`G(noise)` in evaluation mode: BatchNorm uses its running statistics.

    Args:
      generator: the module the state was trained with.
      state: a trained `GANState`, or the generator's variables (`load_generator`'s).
      noise: `z` of shape `[N, latent_dim]`, or `(z, labels)` for a conditional generator.

    Returns:
      Images `[N, 28, 28, 1]` in the generator's output range.
    """
    inputs = noise if isinstance(noise, tuple) else (noise,)
    return generator.apply(generator_variables(state), *inputs, train=False)


def balanced_labels(num: int, num_classes: int) -> np.ndarray:
    """`int32[num]` cycling through the classes, `0, 1, ..., K-1, 0, 1, ...`: every prefix is as
    balanced as its length allows."""
    return np.arange(num, dtype=np.int32) % num_classes


def sample(
    generator: nn.Module,
    state: Variables,
    key: jax.Array,
    labels: Sequence[int] | np.ndarray | jax.Array | None = None,
    num: int | None = None,
    batch_size: int | None = None,
) -> jax.Array:
    """Draws images, of the requested classes when the generator is conditional.

    Args:
      generator: the module the state was trained with.
      state: a trained `GANState`, or the generator's variables.
      key: PRNG key for the noise, `N(0, 1)` of shape `[N, latent_dim]`, drawn at once.
      labels: one class per image, for a conditional generator (required there, refused for a
        plain one).
      num: how many images, for a plain generator (the label count otherwise).
      batch_size: run the generator on this many images at a time (one jitted shape; the
        images are those of one call, as BatchNorm runs on its fixed statistics); `None`: all
        at once, unjitted.

    Returns:
      Images `[N, 28, 28, 1]` in the generator's output range.

    Raises:
      ValueError: labels missing, unexpected, not integers or outside `[0, num_classes)`.

    Example::

        sevens = jaxgan.sample(G, state, jax.random.key(0), labels=[7] * 64)
    """
    num_classes = getattr(generator, "num_classes", None)
    if num_classes is None:
        if labels is not None:
            raise ValueError("this generator is unconditional: pass num, not labels")
        if num is None or num <= 0:
            raise ValueError(f"num must be a positive count of images, got {num}")
        noise = jax.random.normal(key, (num, generator.latent_dim))
        return _generate(generator, state, noise, batch_size)
    if labels is None:
        raise ValueError(f"this generator is conditional on {num_classes} classes: pass labels")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D array of integers, got {labels!r}")
    if labels.min() < 0 or labels.max() >= num_classes:
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(f"label {bad} is outside the generator's classes 0..{num_classes - 1}")
    if num is not None and num != labels.size:
        raise ValueError(f"num={num} disagrees with the {labels.size} labels given")
    z = jax.random.normal(key, (labels.size, generator.latent_dim))
    return _generate(generator, state, (z, jnp.asarray(labels, jnp.int32)), batch_size)


def _generate(generator: nn.Module, state: Variables, noise, batch_size: int | None) -> jax.Array:
    if batch_size is None:
        return generate(generator, state, noise)
    run = jax.jit(lambda variables, noise: generate(generator, variables, noise))
    variables = generator_variables(state)
    total = len(jax.tree.leaves(noise)[0])
    batch_size = min(batch_size, total)  # a small request is one batch of its own size
    chunks = []
    for start in range(0, total, batch_size):
        chunk = jax.tree.map(lambda x, s=start: x[s : s + batch_size], noise)
        pad = batch_size - len(jax.tree.leaves(chunk)[0])  # the last chunk, padded: one shape
        chunk = jax.tree.map(lambda x, p=pad: jnp.pad(x, [(0, p)] + [(0, 0)] * (x.ndim - 1)), chunk)
        chunks.append(run(variables, chunk)[: batch_size - pad])
    return jnp.concatenate(chunks)
