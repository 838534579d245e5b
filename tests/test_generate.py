"""`jaxgan.sample`: images of requested classes, and clear errors for bad labels."""

import jax
import numpy as np
import pytest

from jaxgan import adam, create_state, make_models, sample


@pytest.fixture(scope="module")
def conditional():
    G, D = make_models("mlp", num_classes=10)
    return G, create_state(jax.random.key(0), G, D, adam(), adam())


def test_sample_draws_the_requested_classes(conditional):
    G, state = conditional
    key = jax.random.key(1)
    sevens = sample(G, state, key, labels=[7] * 5)
    assert sevens.shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(sevens, sample(G, state, key, labels=np.full(5, 7)))
    # Same noise, other class: another image (the label reaches the generator).
    assert float(np.abs(sevens - sample(G, state, key, labels=[3] * 5)).max()) > 1e-3


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([1, 10], "label 10 is outside the generator's classes 0..9"),
        ([-1], "label -1 is outside"),
        ([1.5, 2.0], "integers"),
        ([], "non-empty"),
        (None, "conditional on 10 classes: pass labels"),
    ],
)
def test_bad_labels_fail_clearly(conditional, labels, message):
    G, state = conditional
    with pytest.raises(ValueError, match=message):
        sample(G, state, jax.random.key(0), labels=labels)


def test_plain_generator_takes_a_count_not_labels():
    G, D = make_models("mlp")
    state = create_state(jax.random.key(0), G, D, adam(), adam())
    assert sample(G, state, jax.random.key(1), num=3).shape == (3, 28, 28, 1)
    with pytest.raises(ValueError, match="unconditional"):
        sample(G, state, jax.random.key(1), labels=[1, 2])
    with pytest.raises(ValueError, match="positive count"):
        sample(G, state, jax.random.key(1))
