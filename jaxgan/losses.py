"""Binary cross-entropy, in the form PyTorch's `nn.BCELoss` computes it and in a stable form.

The notes' discriminator ends in `nn.Sigmoid()` and is trained with `nn.BCELoss()`. jaxgan's
discriminators return logits, and the loss named `"bce"` applies the sigmoid and then `bce`,
which reproduces `BCELoss` exactly where its arithmetic is special:

- forward: each log is clamped at -100, so a probability of exactly 0 or 1 costs 100, not inf;
- backward: PyTorch does not differentiate the clamped expression (that would give 0 where the
  clamp is active); its kernel uses `(p - t) / max((1 - p) p, 1e-12)`. `bce` has a custom VJP
  with that formula, so saturated discriminators receive the same, large, finite gradient.

`"bce_logits"` is `optax.sigmoid_binary_cross_entropy`, the numerically stable form on logits,
which is what one should train with when parity with the notes' PyTorch code is not the point.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxgan.choices import LOSS_NAMES

# PyTorch's binary_cross_entropy_backward divides by max((1 - p) p, EPSILON).
_TORCH_BCE_EPSILON = 1e-12
_TORCH_LOG_CLAMP = -100.0

LossFn = Callable[[jax.Array, float], jax.Array]


def _clamped_logs(p: jax.Array) -> tuple[jax.Array, jax.Array]:
    return (
        jnp.maximum(jnp.log(p), _TORCH_LOG_CLAMP),
        jnp.maximum(jnp.log1p(-p), _TORCH_LOG_CLAMP),
    )


@jax.custom_vjp
def bce(probs: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-element binary cross-entropy on probabilities, as `torch.nn.BCELoss` computes it.

    `-(t max(log p, -100) + (1 - t) max(log(1 - p), -100))`, with PyTorch's gradient
    `d/dp = (p - t) / max((1 - p) p, 1e-12)` (see the module docstring).

    Args:
      probs: probabilities in `[0, 1]`.
      targets: targets in `[0, 1]`, broadcastable to `probs`.

    Returns:
      The loss of each element, shaped like `probs`; `BCELoss()` is its mean.
    """
    log_p, log_1mp = _clamped_logs(probs)
    return -(targets * log_p + (1 - targets) * log_1mp)


def _bce_fwd(probs, targets):
    return bce(probs, targets), (probs, targets)


def _bce_bwd(residuals, g):
    probs, targets = residuals
    # The same expression, in the same order, as PyTorch's CPU and CUDA kernels.
    probs_bar = g * (probs - targets) / jnp.maximum((1 - probs) * probs, _TORCH_BCE_EPSILON)
    log_p, log_1mp = _clamped_logs(probs)
    targets_bar = g * (log_1mp - log_p)
    return probs_bar, jnp.broadcast_to(targets_bar, jnp.shape(targets)).astype(targets.dtype)


bce.defvjp(_bce_fwd, _bce_bwd)


def _torch_bce_loss(logits: jax.Array, target: float) -> jax.Array:
    probs = jax.nn.sigmoid(logits)
    return bce(probs, jnp.full_like(probs, target)).mean()


def _logits_bce_loss(logits: jax.Array, target: float) -> jax.Array:
    return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)).mean()


# name -> loss(discriminator logits, target label) -> mean over the batch.
LOSSES: dict[str, LossFn] = dict(zip(LOSS_NAMES, (_torch_bce_loss, _logits_bce_loss), strict=True))


def get_loss(name: str) -> LossFn:
    """The batch-mean loss `loss(logits, target)` registered under `name` (see `LOSSES`)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]
