"""Tests of jaxgan.eval.classifier: the shipped weights, the trainer, batching and loading."""

import importlib.resources

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.eval import classifier as clf
from jaxgan.training.data import Dataset, load_idx_split


def test_shipped_classifier_reaches_99_percent_on_the_real_test_set(mnist_dir):
    test = load_idx_split(mnist_dir, "test")
    assert len(test) == 10_000
    accuracy = clf.accuracy(clf.load_classifier(), test)
    assert accuracy >= 0.99, f"shipped classifier test accuracy {accuracy:.4f} < 0.99"


def test_shipped_fashion_classifier_reaches_91_percent_and_is_not_the_mnist_one(
    fashion_dir, mnist_dir
):
    # 91.6% measured when it was trained (scripts/train_classifier.py, 5 epochs); a classifier
    # of the other dataset scores ~12% here, so the two cannot be swapped unnoticed.
    fashion = load_idx_split(fashion_dir, "test")
    accuracy = clf.accuracy(clf.load_classifier("fashion_mnist"), fashion)
    assert accuracy >= 0.91, f"Fashion-MNIST classifier test accuracy {accuracy:.4f} < 0.91"
    assert clf.accuracy(clf.load_classifier("mnist"), fashion) < 0.5


@pytest.mark.parametrize("dataset", sorted(clf.WEIGHTS_FILES))
def test_shipped_weights_are_small_package_data(dataset):
    path = importlib.resources.files("jaxgan.eval") / "assets" / clf.WEIGHTS_FILES[dataset]
    size = len(path.read_bytes())
    assert 100_000 < size < 1_000_000
    # Cached, not reread per call.
    assert clf.load_classifier(dataset) is clf.load_classifier(dataset)


def test_no_classifier_for_an_unknown_dataset_says_which_exist():
    with pytest.raises(clf.NoClassifierError, match="fashion_mnist"):
        clf.load_classifier("cifar10")


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
    floats = images.astype(np.float32) / 255  # correctly rounded, unlike XLA's x / 255
    shipped = clf.load_classifier()
    with jax.enable_x64(True):
        # In float64 (the shipped weights cast exactly), where batching changes results only by
        # rounding of ~1e-15 relative on any CPU, not by float32's ~1e-7 that depends on how
        # the GEMMs are blocked for each batch size.
        params = jax.tree.map(lambda x: x.astype(jnp.float64), shipped.params)
        shipped = clf.Classifier(shipped.model, params)
        features, logits = clf.features_and_logits(shipped, images, batch_size=16)
        chex.assert_shape((features, logits), ((37, 128), (37, 10)))
        direct = shipped.model.apply(
            shipped.params, jnp.asarray(images, jnp.float32) / 255, return_features=True
        )
        as_float = clf.features_and_logits(shipped, floats, batch_size=64)
        direct_float = shipped.model.apply(shipped.params, floats, return_features=True)
    assert features.dtype == logits.dtype == direct[1].dtype == np.float64
    # Each output is a chain of sums of at most 3 x 3 x 64 = 576 products: float64 rounding is
    # ~1e-13 of the largest values (features and logits of order 10); 1e-9 leaves 1e4.
    chex.assert_trees_all_close((features, logits), direct, atol=1e-9 * 10, rtol=1e-9)
    chex.assert_trees_all_close(as_float, direct_float, atol=1e-9 * 10, rtol=1e-9)
    # Float images give what uint8 ones give, up to the rounding of x / 255 to float32: numpy's
    # is correctly rounded (0.5 ulp), XLA's is not (1.25 ulp here; a division through the
    # reciprocal stays within 2.5), so the inputs differ by at most 3 ulp (3.6e-7 for pixels up
    # to 1). On these images every output's gradient has an L1 norm of at most 150 over the
    # pixels (the classifier is piecewise linear), so outputs differ by at most
    # 150 * 3.6e-7 = 5.4e-5; 1e-4 bounds that. A second division by 255 would move them by ~10.
    chex.assert_trees_all_close(as_float, (features, logits), atol=1e-4, rtol=0)
    assert np.all(features >= 0) and np.any(features > 0)  # post-ReLU and not dead


def _random_params(model: clf.SmallCNN, seed: int) -> clf.Params:
    # Shapes from tracing alone: an eager init would compile every layer's ops one by one.
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)


def test_save_and_load_round_trip_and_reject_other_shapes(tmp_path):
    params = _random_params(clf.SmallCNN(), 3)
    clf.save_classifier(clf.Classifier(clf.SmallCNN(), params), tmp_path / "w.msgpack")
    chex.assert_trees_all_equal(clf.load_classifier(path=tmp_path / "w.msgpack").params, params)

    narrow = clf.SmallCNN(widths=(8, 16, 16))
    clf.save_classifier(clf.Classifier(narrow, _random_params(narrow, 0)), tmp_path / "n.msgpack")
    with pytest.raises(ValueError, match=r"Conv_0.*needs float32\[32\]"):
        clf.load_classifier(path=tmp_path / "n.msgpack")


def test_trainer_rejects_no_epochs_and_a_batch_larger_than_the_data():
    data = Dataset(np.zeros((10, 28, 28, 1), np.uint8), np.zeros(10, np.int32), "zeros")
    with pytest.raises(ValueError, match="batch_size=64"):
        clf.train_classifier(data, data, batch_size=64)
    with pytest.raises(ValueError, match="got 0"):
        clf.train_classifier(data, data, epochs=0, batch_size=4)
