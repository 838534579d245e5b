"""Tests of jaxgan.eval.classifier: the shipped weights, the trainer, batching and loading."""

import importlib.resources

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import classifier as clf
from jaxgan.training.data import Dataset, load_idx_split


def test_shipped_classifier_reaches_99_percent_on_the_real_test_set(mnist_dir):
    test = load_idx_split(mnist_dir, "test")
    assert len(test) == 10_000
    accuracy = clf.accuracy(clf.load_classifier(), test)
    assert accuracy >= 0.99, f"shipped classifier test accuracy {accuracy:.4f} < 0.99"


def test_shipped_weights_are_small_package_data():
    path = importlib.resources.files("jaxgan") / "assets" / clf.WEIGHTS_FILE
    size = len(path.read_bytes())
    assert 100_000 < size < 1_000_000
    assert clf.load_classifier() is clf.load_classifier()  # cached, not reread per call


def test_training_is_deterministic_given_the_seed_and_learns(mnist_dir):
    train = load_idx_split(mnist_dir, "train").take(1024)
    held_out = load_idx_split(mnist_dir, "test").take(500)
    logs = []

    def run(seed, on_epoch=None):
        return clf.train_classifier(
            train, held_out, seed=seed, epochs=2, batch_size=64, on_epoch=on_epoch
        )

    first = run(0, lambda epoch, metrics: logs.append((epoch, metrics)))
    again, other = run(0), run(1)
    chex.assert_trees_all_equal(first.params, again.params)
    differs = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), first.params, other.params)
    assert all(jax.tree.leaves(differs))
    assert [epoch for epoch, _ in logs] == [1, 2]
    assert set(logs[0][1]) == {"train_loss", "train_accuracy", "test_accuracy"}
    assert logs[1][1]["train_loss"] < logs[0][1]["train_loss"]
    # 32 updates on 1024 images: far from converged, but well past chance (0.1).
    assert logs[1][1]["test_accuracy"] == clf.accuracy(first, held_out) > 0.5


def test_features_and_logits_batches_match_one_forward_pass(mnist_dir):
    images = load_idx_split(mnist_dir, "test").images[:37]
    shipped = clf.load_classifier()
    features, logits = clf.features_and_logits(shipped, images, batch_size=16)
    chex.assert_shape((features, logits), ((37, 128), (37, 10)))
    direct = shipped.model.apply(
        shipped.params, jnp.asarray(images, jnp.float32) / 255, return_features=True
    )
    chex.assert_trees_all_close((features, logits), direct, atol=1e-4, rtol=1e-4)
    as_float = clf.features_and_logits(shipped, images.astype(np.float32) / 255, batch_size=64)
    chex.assert_trees_all_close(as_float, (features, logits), atol=1e-5, rtol=1e-5)
    assert np.all(features >= 0) and np.any(features > 0)  # post-ReLU and not dead


def _random_params(model: clf.MnistCNN, seed: int) -> clf.Params:
    # Shapes from tracing alone: an eager init would compile every layer's ops one by one.
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)


def test_save_and_load_round_trip_and_reject_other_shapes(tmp_path):
    params = _random_params(clf.MnistCNN(), 3)
    clf.save_classifier(clf.Classifier(clf.MnistCNN(), params), tmp_path / "w.msgpack")
    chex.assert_trees_all_equal(clf.load_classifier(tmp_path / "w.msgpack").params, params)

    narrow = clf.MnistCNN(widths=(8, 16, 16))
    clf.save_classifier(clf.Classifier(narrow, _random_params(narrow, 0)), tmp_path / "n.msgpack")
    with pytest.raises(ValueError, match=r"Conv_0.*needs float32\[32\]"):
        clf.load_classifier(tmp_path / "n.msgpack")


def test_trainer_rejects_no_epochs_and_a_batch_larger_than_the_data():
    data = Dataset(np.zeros((10, 28, 28, 1), np.uint8), np.zeros(10, np.int32), "zeros")
    with pytest.raises(ValueError, match="batch_size=64"):
        clf.train_classifier(data, data, batch_size=64)
    with pytest.raises(ValueError, match="got 0"):
        clf.train_classifier(data, data, epochs=0, batch_size=4)
