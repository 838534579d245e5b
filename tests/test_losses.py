"""`bce` must be PyTorch's `BCELoss` in value and gradient, saturated inputs included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxgan.losses import LOSSES, bce, bce_with_logits, get_loss

PROBS = np.concatenate(
    [
        np.random.default_rng(0).uniform(0.0005, 0.9995, 2000),
        [0.0, 1.0, 1.2e-38, 1e-30, 1 - 2**-24, 2**-30, 0.5],
    ]
).astype(np.float32)


@pytest.mark.parametrize("target", [0.0, 1.0, 0.3])
def test_bce_matches_torch_bceloss_in_value_and_gradient(target):
    p = torch.tensor(PROBS, requires_grad=True)
    t = torch.full_like(p, target)
    torch_loss = torch.nn.BCELoss(reduction="sum")(p, t)
    torch_loss.backward()
    torch_each = torch.nn.functional.binary_cross_entropy(p.detach(), t, reduction="none")

    targets = jnp.full(PROBS.shape, target, jnp.float32)
    each = bce(jnp.asarray(PROBS), targets)
    grad = jax.grad(lambda q: bce(q, targets).sum())(jnp.asarray(PROBS))

    # Values agree to rounding: the two libraries' vectorized logs differ by up to 2 ulp.
    # (Inputs are normal floats: XLA:CPU flushes denormals to zero, PyTorch does not.)
    np.testing.assert_allclose(each, torch_each.numpy(), rtol=2.5e-7, atol=0)
    # The clamp at -100: p = 0 costs 100 t and p = 1 costs 100 (1 - t), as in PyTorch.
    np.testing.assert_allclose(each[PROBS == 0.0], 100 * target, rtol=1e-6)
    np.testing.assert_allclose(each[PROBS == 1.0], 100 * (1 - target), rtol=1e-6)
    # Gradients use PyTorch's own formula, so they agree exactly, 1e12-sized ones included.
    np.testing.assert_array_equal(grad, p.grad.numpy())
    assert np.isfinite(grad).all()


def test_bce_gradient_is_not_the_clamped_expressions_derivative():
    # At p = 0 with target 1 the clamp is active: autodiff through it would give 0, PyTorch
    # gives -1e12. A wrong (plain autodiff) implementation fails here.
    g = jax.grad(lambda q: bce(q, jnp.ones(1)).sum())(jnp.zeros(1))
    assert g[0] == -1e12


def test_bce_target_gradient_matches_torch():
    p = torch.tensor(PROBS[:100])
    t = torch.tensor(np.linspace(0, 1, 100, dtype=np.float32), requires_grad=True)
    torch.nn.functional.binary_cross_entropy(p, t, reduction="sum").backward()
    grad = jax.grad(lambda u: bce(jnp.asarray(PROBS[:100]), u).sum())(jnp.asarray(t.detach()))
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_bce_with_logits_matches_torch_and_stays_finite():
    logits = np.linspace(-200, 200, 801, dtype=np.float32)
    for target in (0.0, 1.0):
        s = torch.tensor(logits, requires_grad=True)
        expected = torch.nn.functional.binary_cross_entropy_with_logits(
            s, torch.full_like(s, target), reduction="none"
        )
        expected.sum().backward()
        targets = jnp.full(logits.shape, target)
        got = bce_with_logits(jnp.asarray(logits), targets)
        grad = jax.grad(lambda x, t=targets: bce_with_logits(x, t).sum())(jnp.asarray(logits))
        np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-6, atol=1e-6)
        # PyTorch computes sigmoid(s) - t, which cancels near 1 (its error there is up to an
        # ulp of 1.0, 6e-8); ours is accurate to relative precision.
        np.testing.assert_allclose(grad, s.grad.numpy(), rtol=1e-6, atol=1.2e-7)
        exact = -target * torch.sigmoid(-s.double()) + (1 - target) * torch.sigmoid(s.double())
        np.testing.assert_allclose(grad, exact.detach().numpy(), rtol=2e-6, atol=1e-37)


def test_registered_losses_agree_away_from_saturation():
    logits = jnp.linspace(-6.0, 6.0, 64)
    for target in (0.0, 1.0):
        a = LOSSES["bce"](logits, target)
        b = LOSSES["bce_logits"](logits, target)
        np.testing.assert_allclose(a, b, rtol=1e-6)
        assert a.shape == ()


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match="bce_logits"):
        get_loss("hinge")
