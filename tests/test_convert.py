"""flax <-> PyTorch conversion: exact both ways, and converted models compute the same outputs.

Every test that converts runs on both models, plain and class-conditional (label embeddings,
projection discriminators). Conversions are exact, so they are compared bit for bit; outputs of
converted models are compared in float64 on both sides, where two correct implementations agree
to ~1e-14 whatever their order of summation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from numerics import as_float64

from jaxgan import MODELS, adam, create_state, make_models, make_train_step
from parity import convert, reference

# `trained` is built once per module: under pytest-xdist, keep the module in one worker.
pytestmark = pytest.mark.xdist_group("test_convert")

FEATURES = 8  # the DCGAN narrowed so that the tests stay fast; layouts do not depend on it
NUM_CLASSES = 10
# (model, conditional): both families, plain and class-conditional.
CASES = [(model, conditional) for model in MODELS for conditional in (False, True)]
# Outputs below are of order 1 (images in [0, 1], probabilities near 1/2, the latent layer's
# N(0, 1)-sized sums) and sums of at most ~1e4 products: float64 rounding of either side is at
# most ~1e4 * 1.1e-16 ~ 1e-12 of them. 1e-9 leaves a margin of 1000.
ATOL64 = 1e-9


def case_id(case) -> str:
    model, conditional = case
    return f"{model}-conditional" if conditional else model


def num_classes(conditional: bool) -> int | None:
    return NUM_CLASSES if conditional else None


def initial_state(model: str, conditional: bool = False):
    G, D = make_models(model, features=FEATURES, num_classes=num_classes(conditional))
    tx = adam()
    return G, D, create_state(jax.random.key(0), G, D, tx, tx)


def labelled(x, seed: int, conditional: bool):
    """`x`, or `(x, labels)` with seeded labels for the conditional models (either framework)."""
    if not conditional:
        return x
    labels = np.random.default_rng(seed).integers(0, NUM_CLASSES, len(x))
    if isinstance(x, torch.Tensor):
        return x, torch.tensor(labels)
    return x, jnp.asarray(labels, jnp.int32)


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def trained(request):
    """`(model, conditional, G, D, state)`, two Adam steps in: moments, running statistics and
    (conditional) embeddings not trivial."""
    model, conditional = request.param
    G, D, state = initial_state(model, conditional)
    tx = adam()
    step = jax.jit(make_train_step("two_pass", G, D, tx, tx))
    rng = np.random.default_rng(10)
    for i in range(2):
        real = rng.uniform(size=(8, 28, 28, 1)).astype(np.float32)
        noise = rng.standard_normal((8, 100)).astype(np.float32)
        state, _ = step(state, labelled(real, i, conditional), labelled(noise, 10 + i, conditional))
    return model, conditional, G, D, state


def torch_side(model: str, conditional: bool = False):
    G, D = reference.make_models(model, FEATURES, num_classes(conditional))
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
    model, conditional, _, _, state = trained
    G, D, oG, oD = torch_side(model, conditional)
    convert.load_into_torch(model, state, G, D, oG, oD, conditional=conditional)
    back = convert.from_torch(model, G, D, oG, oD, int(state.step), conditional=conditional)
    assert_bitwise_equal(jax.device_get(state), back)
    if conditional:  # the label embedding and the projection made the trip, Adam moments too
        assert "Embed_0" in back.g_opt_state[0].mu and "projection" in back.d_opt_state[0].nu


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_torch_to_flax_to_torch_is_bit_identical(case):
    model, conditional = case
    G, D, oG, oD = torch_side(model, conditional)
    real = labelled(torch.rand(8, 1, 28, 28), 0, conditional)
    noise = labelled(torch.randn(8, 100), 1, conditional)
    for _ in range(2):  # real Adam moments and running statistics, from PyTorch's own steps
        reference.two_pass(G, D, oG, oD, real, noise)
    state = convert.from_torch(model, G, D, oG, oD, 2, conditional=conditional)
    G2, D2, oG2, oD2 = torch_side(model, conditional)
    convert.load_into_torch(model, state, G2, D2, oG2, oD2, conditional=conditional)
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
    model, conditional, G, D, state = trained
    tG, tD, oG, oD = torch_side(model, conditional)
    tG, tD = tG.double(), tD.double()
    with jax.enable_x64(True):
        state = as_float64(state)
        convert.load_into_torch(model, state, tG, tD, oG, oD, conditional=conditional)
        tG.train(train)
        tD.train(train)
        z = np.random.default_rng(5).standard_normal((16, 100)).astype(np.float32)
        z = z.astype(np.float64)
        # Every class, so that every row of each embedding takes part.
        labels = (np.arange(16, dtype=np.int32) % NUM_CLASSES,) if conditional else ()
        torch_labels = tuple(torch.tensor(y).long() for y in labels)

        @jax.jit  # one program (run op by op, each operation would compile on its own)
        def forward(state, z, *labels):
            images, _ = G.apply(
                {"params": state.g_params, "batch_stats": state.g_batch_stats},
                z,
                *labels,
                train=train,
                mutable=["batch_stats"],
            )
            logits, _ = D.apply(
                {"params": state.d_params, "batch_stats": state.d_batch_stats},
                images,
                *labels,
                train=train,
                mutable=["batch_stats"],
            )
            return images, jax.nn.sigmoid(logits)

        images, probs = forward(state, z, *labels)
    assert images.dtype == probs.dtype == jnp.float64
    with torch.no_grad():
        torch_images = tG(torch.tensor(np.asarray(z)), *torch_labels)
        torch_probs = tD(nchw(images), *torch_labels)
    assert torch_images.dtype == torch_probs.dtype == torch.float64
    torch_images = torch_images.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(images, torch_images, rtol=0, atol=ATOL64)
    np.testing.assert_allclose(probs, torch_probs[:, 0].numpy(), rtol=0, atol=ATOL64)


def test_latent_layer_is_conv_transpose_on_a_1x1_input():
    layer = torch.nn.ConvTranspose2d(10, 6, 7, 1, 0, bias=False).double()
    z = torch.randn(3, 10, dtype=torch.float64)
    kernel = convert.LATENT[0].from_torch(layer.weight.detach().numpy(), ())
    with jax.enable_x64(True):
        # nn.Dense, reshaped to NHWC as DCGANGenerator does
        dense = np.asarray(jnp.asarray(z.numpy()) @ jnp.asarray(kernel))
    assert dense.dtype == np.float64
    expected = layer(z.view(3, 10, 1, 1)).permute(0, 2, 3, 1).detach().numpy()
    np.testing.assert_allclose(dense.reshape(3, 7, 7, 6), expected, rtol=0, atol=ATOL64)


def test_a_layout_that_does_not_match_the_networks_is_an_error():
    _, _, state = initial_state("mlp")
    G, D, _, _ = torch_side("mlp")
    with pytest.raises(ValueError, match="layout does not match"):
        convert.to_state_dict("mlp", "G", state.d_params, {}, D)
    with pytest.raises(ValueError, match="layout does not match"):
        convert.from_state_dict("mlp", "D", G.state_dict())


@pytest.mark.parametrize("model", MODELS)
def test_conditional_and_plain_layouts_are_not_interchangeable(model):
    _, _, state = initial_state(model, conditional=True)
    G, _, _, _ = torch_side(model, conditional=True)
    with pytest.raises(ValueError, match=r"layout does not match: flax params/Embed_0/embedding"):
        convert.to_state_dict(model, "G", state.g_params, state.g_batch_stats, G)
    with pytest.raises(ValueError, match=r"layout does not match: PyTorch label_emb\.weight"):
        convert.from_state_dict(model, "G", G.state_dict())
