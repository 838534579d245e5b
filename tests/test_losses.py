"""`bce` must be PyTorch's `BCELoss` in value and gradient, saturated inputs included.

Comparisons with PyTorch run in float64 on both sides, where each library's `log`, `log1p`
and `exp` are accurate to an ulp or two (2.2e-16 relative) on any CPU; the tolerances below
are derived from that. Float32 is checked against the exact (float64) values only, with bounds
in float32 ulps (2^-23 = 1.2e-7).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxgan.losses import LOSSES, bce, get_loss

PROBS = np.concatenate(
    [
        np.random.default_rng(0).uniform(0.0005, 0.9995, 2000),
        [0.0, 1.0, 1.2e-38, 1e-30, 1 - 2**-24, 2**-30, 0.5],
    ]
).astype(np.float32)
# In float64 the clamp at -100 also acts on probabilities above 0 (log p < -100 for p < 3.7e-44).
PROBS64 = np.concatenate([PROBS.astype(np.float64), [1e-50, 1e-300]])
# Relative difference allowed between two float64 evaluations of a log-sum: each side's logs are
# within 2 ulp of exact, the sums add non-negative terms; 1e-12 is ~4500 ulp.
RTOL64 = 1e-12


@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("target", [0.0, 1.0, 0.3])
def test_bce_matches_torch_bceloss_in_value_and_gradient(target, float64):
    p = torch.tensor(PROBS64, requires_grad=True)
    t = torch.full_like(p, target)
    torch_loss = torch.nn.BCELoss(reduction="sum")(p, t)
    torch_loss.backward()
    torch_each = torch.nn.functional.binary_cross_entropy(p.detach(), t, reduction="none")

    targets = jnp.full(PROBS64.shape, target)
    each = bce(jnp.asarray(PROBS64), targets)
    grad = jax.grad(lambda q: bce(q, targets).sum())(jnp.asarray(PROBS64))
    assert each.dtype == grad.dtype == jnp.float64

    np.testing.assert_allclose(each, torch_each.numpy(), rtol=RTOL64, atol=0)
    # The clamp at -100: log p = -inf (p = 0) or below -100 costs 100 t (plus (1 - t) p, at most
    # 1e-50 here), as in PyTorch; likewise p = 1 costs 100 (1 - t).
    clamped = PROBS64 < np.exp(-100)
    assert clamped.sum() == 3
    np.testing.assert_allclose(each[clamped], 100 * target, rtol=RTOL64, atol=1e-40)
    np.testing.assert_allclose(each[PROBS64 == 1.0], 100 * (1 - target), rtol=RTOL64)
    # Gradients use PyTorch's own formula, `(p - t) / max((1 - p) p, 1e-12)` times an incoming
    # gradient of exactly 1: the same correctly rounded operations in the same order, so they
    # agree exactly on any machine where the clamp is not active.
    saturated = (1 - PROBS64) * PROBS64 < 1e-12
    np.testing.assert_array_equal(grad[~saturated], p.grad.numpy()[~saturated])
    # Where it is, PyTorch's CPU kernel divides by float32(1e-12) = 9.99999996e-13 even in
    # float64, jaxgan by 1e-12: 1e12-sized gradients that differ by 4e-9 relative. (In float32,
    # what training uses, both divide by float32(1e-12): see the next test.)
    np.testing.assert_allclose(grad[saturated], p.grad.numpy()[saturated], rtol=5e-9)
    assert np.isfinite(grad).all()


def test_bce_in_float32_is_the_float64_loss_rounded():
    # Training runs in float32: there the loss is within a few float32 ulps of the float64 value
    # of the same inputs (each log is accurate to ~2 ulp; a sum of two non-negative terms adds
    # one more), and the gradient, a difference that is exact, a product and a quotient, within
    # 3 ulps. (Inputs are normal floats: XLA:CPU flushes denormals to zero, PyTorch does not.)
    target = np.float32(0.3)
    targets = jnp.full(PROBS.shape, target)
    each = bce(jnp.asarray(PROBS), targets)
    grad = jax.grad(lambda q: bce(q, targets).sum())(jnp.asarray(PROBS))
    assert each.dtype == grad.dtype == jnp.float32
    p64 = torch.tensor(PROBS, dtype=torch.float64)
    t64 = torch.full_like(p64, float(target))  # float32's 0.3, exactly
    exact = torch.nn.functional.binary_cross_entropy(p64, t64, reduction="none")
    np.testing.assert_allclose(each, exact.numpy(), rtol=8 * 2**-23, atol=0)
    # The clamp at -100 (p = 0 or p = 1), as in PyTorch.
    np.testing.assert_allclose(each[PROBS == 0.0], 100 * t64[0], rtol=8 * 2**-23)
    np.testing.assert_allclose(each[PROBS == 1.0], 100 * (1 - t64[0]), rtol=8 * 2**-23)
    # PyTorch's formula with float32's clamp, exactly as the float32 kernels compute it.
    exact_grad = (p64 - t64) / torch.clamp((1 - p64) * p64, min=float(np.float32(1e-12)))
    np.testing.assert_allclose(grad, exact_grad.numpy(), rtol=8 * 2**-23, atol=0)


def test_bce_gradient_is_not_the_clamped_expressions_derivative():
    # At p = 0 with target 1 the clamp is active: autodiff through it would give 0, PyTorch
    # gives -1e12. A wrong (plain autodiff) implementation fails here.
    g = jax.grad(lambda q: bce(q, jnp.ones(1)).sum())(jnp.zeros(1))
    assert g[0] == -1e12


def test_bce_target_gradient_matches_torch(float64):
    p = torch.tensor(PROBS64[:100])
    t = torch.tensor(np.linspace(0, 1, 100), requires_grad=True)
    torch.nn.functional.binary_cross_entropy(p, t, reduction="sum").backward()
    grad = jax.grad(lambda u: bce(jnp.asarray(PROBS64[:100]), u).sum())(jnp.asarray(t.detach()))
    assert grad.dtype == jnp.float64
    # log(1 - p) - log(p) with |logs| <= 7.6 (p in [0.0005, 0.9995]): each side within a few
    # ulp of 7.6 (1.8e-15), and the difference may cancel: an absolute bound, with margin 50.
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=RTOL64, atol=1e-13)


def test_bce_logits_matches_torch_and_stays_finite(float64):
    # "bce_logits" is optax.sigmoid_binary_cross_entropy averaged over the batch, as
    # `BCEWithLogitsLoss()` (mean reduction) in the PyTorch reference.
    logits = np.linspace(-200, 200, 801)
    n = len(logits)
    loss = LOSSES["bce_logits"]
    for target in (0.0, 1.0):
        s = torch.tensor(logits, requires_grad=True)
        expected = torch.nn.BCEWithLogitsLoss()(s, torch.full_like(s, target))
        expected.backward()
        got = loss(jnp.asarray(logits), target)
        grad = jax.grad(lambda x, t=target: loss(x, t))(jnp.asarray(logits))
        assert got.dtype == grad.dtype == jnp.float64
        # PyTorch computes log(exp(-m) + exp(-s - m)) and sigmoid(s) - t, which round 1 + x and
        # cancel near 1: their absolute error is a few ulp of 1.0 (2.2e-16) per element, where
        # optax's log-sigmoid is accurate to relative precision. Hence an absolute bound of ~45
        # ulp of 1.0 per element, divided by the n of the mean.
        np.testing.assert_allclose(got, expected.item(), rtol=RTOL64, atol=1e-14)
        np.testing.assert_allclose(grad, s.grad.numpy(), rtol=RTOL64, atol=1e-14 / n)


def test_bce_logits_in_float32_is_accurate_to_relative_precision():
    logits = np.linspace(-200, 200, 801, dtype=np.float32)
    n = len(logits)
    s = torch.tensor(logits, dtype=torch.float64)
    loss = LOSSES["bce_logits"]
    for target in (0.0, 1.0):
        grad = jax.grad(lambda x, t=target: loss(x, t))(jnp.asarray(logits))
        assert grad.dtype == jnp.float32 and np.isfinite(grad).all()
        # The exact gradient (-t σ(-s) + (1 - t) σ(s)) / n, in float64: within 16 float32 ulps
        # of it, relative, down to where it underflows float32 (σ(-200) ~ 1e-87).
        exact = (-target * torch.sigmoid(-s) + (1 - target) * torch.sigmoid(s)) / n
        np.testing.assert_allclose(grad, exact.numpy(), rtol=16 * 2**-23, atol=1e-37)
        # The mean of t softplus(-s) + (1 - t) softplus(s), each as numpy's accurate logaddexp:
        # a sum of 801 positive float32 terms, within ~n ulps of the exact one.
        exact_loss = np.logaddexp(0.0, -s.numpy()) if target else np.logaddexp(0.0, s.numpy())
        got = loss(jnp.asarray(logits), target)
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(got, exact_loss.mean(), rtol=n * 2**-23)


def test_registered_losses_agree_away_from_saturation(float64):
    logits = jnp.linspace(-6.0, 6.0, 64)
    for target in (0.0, 1.0):
        a = LOSSES["bce"](logits, target)
        b = LOSSES["bce_logits"](logits, target)
        assert a.dtype == b.dtype == jnp.float64
        # `bce` takes logs of σ(s); 1 - σ(s) rounded at |s| <= 6 keeps a relative error of at
        # most 2.2e-16 e^6 ~ 1e-13: rtol 1e-10 leaves a margin of 1000.
        np.testing.assert_allclose(a, b, rtol=1e-10)
        assert a.shape == ()


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match="bce_logits"):
        get_loss("hinge")
