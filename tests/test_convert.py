"""flax <-> PyTorch conversion: exact both ways, and converted models compute the same outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxgan import MODELS, adam, create_state, make_models, make_train_step
from parity import convert, reference

FEATURES = 8  # the DCGAN narrowed so that the tests stay fast; layouts do not depend on it


def initial_state(model: str):
    G, D = make_models(model, features=FEATURES)
    tx = adam()
    return G, D, create_state(jax.random.key(0), G, D, tx, tx)


@pytest.fixture(scope="module", params=MODELS)
def trained(request):
    """`(model, G, D, state)`, two Adam steps in: moments and running statistics not trivial."""
    model = request.param
    G, D, state = initial_state(model)
    tx = adam()
    step = jax.jit(make_train_step("two_pass", G, D, tx, tx))
    for i in range(2):
        real = jax.random.uniform(jax.random.key(10 + i), (8, 28, 28, 1))
        noise = jax.random.normal(jax.random.key(20 + i), (8, 100))
        state, _ = step(state, real, noise)
    return model, G, D, state


def torch_side(model: str):
    G, D = reference.make_models(model, FEATURES)
    return G, D, reference.make_optimizer(G), reference.make_optimizer(D)


def assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(
        jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True
    ):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, jax.tree_util.keystr(path)
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path), strict=True)


def test_flax_to_torch_to_flax_is_bit_identical(trained):
    model, _, _, state = trained
    G, D, oG, oD = torch_side(model)
    convert.load_into_torch(model, state, G, D, oG, oD)
    back = convert.from_torch(model, G, D, oG, oD, int(state.step))
    assert_bitwise_equal(jax.device_get(state), back)


@pytest.mark.parametrize("model", MODELS)
def test_torch_to_flax_to_torch_is_bit_identical(model):
    G, D, oG, oD = torch_side(model)
    real, noise = torch.rand(8, 1, 28, 28), torch.randn(8, 100)
    for _ in range(2):  # real Adam moments and running statistics, from PyTorch's own steps
        reference.two_pass(G, D, oG, oD, real, noise)
    state = convert.from_torch(model, G, D, oG, oD, 2)
    G2, D2, oG2, oD2 = torch_side(model)
    convert.load_into_torch(model, state, G2, D2, oG2, oD2)
    for a, b in ((G, G2), (D, D2)):
        for name, t in a.state_dict().items():
            if not name.endswith("num_batches_tracked"):  # kept from the target: see convert
                assert torch.equal(t, b.state_dict()[name]), name
    for a, b in ((oG, oG2), (oD, oD2)):
        state_a, state_b = a.state_dict()["state"], b.state_dict()["state"]
        assert state_a.keys() == state_b.keys()
        for i in state_a:
            for key in ("step", "exp_avg", "exp_avg_sq"):
                assert torch.equal(state_a[i][key], state_b[i][key]), (i, key)


def test_a_fresh_torch_optimizer_is_adam_at_step_zero():
    _, _, state = initial_state("mlp")
    G, _, oG, _ = torch_side("mlp")
    opt_state = convert.from_adam_state_dict("mlp", "G", G, oG)
    # The same tree as optax's own initial state, zeros and count 0.
    assert_bitwise_equal(
        jax.device_get(state.g_opt_state),
        jax.tree.map(lambda x: np.asarray(x), opt_state),
    )


def test_optimizer_over_other_parameters_is_rejected():
    G, _, _, _ = torch_side("mlp")
    _, _, state = initial_state("mlp")
    wrong_order = torch.optim.Adam(list(G.parameters())[::-1])
    with pytest.raises(ValueError, match=r"module\.parameters"):
        convert.to_adam_state_dict("mlp", "G", state.g_opt_state, G, wrong_order)


def nchw(x):
    return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("train", [True, False])
def test_converted_models_compute_the_same_outputs(trained, train):
    model, G, D, state = trained
    tG, tD, oG, oD = torch_side(model)
    convert.load_into_torch(model, state, tG, tD, oG, oD)
    tG.train(train)
    tD.train(train)
    z = jax.random.normal(jax.random.key(5), (16, 100))
    images, _ = G.apply(
        {"params": state.g_params, "batch_stats": state.g_batch_stats},
        z,
        train=train,
        mutable=["batch_stats"],
    )
    logits, _ = D.apply(
        {"params": state.d_params, "batch_stats": state.d_batch_stats},
        images,
        train=train,
        mutable=["batch_stats"],
    )
    with torch.no_grad():
        torch_images = tG(torch.tensor(np.asarray(z)))
        torch_probs = tD(nchw(images))
    # The images are in [0, 1] and the probabilities near 1/2: float32 rounding is ~1e-7.
    np.testing.assert_allclose(images, torch_images.permute(0, 2, 3, 1).numpy(), rtol=0, atol=5e-7)
    np.testing.assert_allclose(jax.nn.sigmoid(logits), torch_probs[:, 0].numpy(), rtol=0, atol=5e-7)


def test_latent_layer_is_conv_transpose_on_a_1x1_input():
    layer = torch.nn.ConvTranspose2d(10, 6, 7, 1, 0, bias=False)
    z = torch.randn(3, 10)
    kernel = convert.LATENT[0].from_torch(layer.weight.detach().numpy(), ())
    dense = jnp.asarray(z.numpy()) @ kernel  # nn.Dense, reshaped to NHWC as DCGANGenerator does
    expected = layer(z.view(3, 10, 1, 1)).permute(0, 2, 3, 1).detach().numpy()
    np.testing.assert_allclose(dense.reshape(3, 7, 7, 6), expected, rtol=1e-6, atol=1e-6)


def test_a_layout_that_does_not_match_the_networks_is_an_error():
    _, _, state = initial_state("mlp")
    G, D, _, _ = torch_side("mlp")
    with pytest.raises(ValueError, match="layout does not match"):
        convert.to_state_dict("mlp", "G", state.d_params, {}, D)
    with pytest.raises(ValueError, match="layout does not match"):
        convert.from_state_dict("mlp", "D", G.state_dict())
