"""A small CNN per dataset, trained on its classes: the feature extractor behind the metrics.

Inception-based scores (FID, IS) need a network trained on the data's own classes; for MNIST an
ImageNet Inception would have to be downloaded and sees digits out of its domain. This module
trains the same small CNN on each dataset instead and ships the weights with the package
(`jaxgan/eval/assets/<dataset>_classifier.msgpack`), so sample quality is measured offline and
identically everywhere, in the feature space of the data's own classes.
`scripts/train_classifier.py --dataset NAME` is the command that produces a shipped file.

Images go in as NHWC `[N, 28, 28, 1]`, either `uint8` in `[0, 255]` or float in `[0, 1]` (what
`jaxgan.training.data.to_float` returns; a tanh generator's `[-1, 1]` output must be mapped first).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan.training.data import Dataset

Params = Any  # the model's variables as flax returns them: {"params": {layer: {kernel, bias}}}
Metrics = dict[str, jax.Array]
EpochLog = Callable[[int, dict[str, float]], None]

# The shipped weights, by dataset (`scripts/train_classifier.py --dataset NAME --out ...`).
WEIGHTS_FILES = {
    "mnist": "mnist_classifier.msgpack",
    "fashion_mnist": "fashion_mnist_classifier.msgpack",
}


class NoClassifierError(ValueError):
    """There is no classifier for a dataset, so its samples cannot be scored."""


class SmallCNN(nn.Module):
    """Three 3x3 convolutions, each followed by 2x2 max pooling, and two dense layers.

    Attributes:
      widths: channels of the three convolutions, at 28x28, 14x14 and 7x7; the last pooling
        leaves 3x3 (dropping the 7th row and column, a blank margin in MNIST-format images),
        flattened.
      feature_dim: width of the penultimate (ReLU) layer, the features the metrics compare.
      num_classes: logits of the head.
    """

    widths: Sequence[int] = (32, 64, 64)
    feature_dim: int = 128
    num_classes: int = 10

    @nn.compact
    def __call__(
        self, x: jax.Array, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Classifies a batch of images.

        Args:
          x: float `[N, 28, 28, 1]` in `[0, 1]`.
          return_features: also return the penultimate features, from the same forward pass.

        Returns:
          The logits `[N, num_classes]`, or `(features [N, feature_dim], logits)`.
        """
        for width in self.widths:
            x = nn.relu(nn.Conv(width, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        features = nn.relu(nn.Dense(self.feature_dim)(x.reshape(x.shape[0], -1)))
        logits = nn.Dense(self.num_classes)(features)
        return (features, logits) if return_features else logits


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A trained classifier: the module (its static configuration) and its weights."""

    model: SmallCNN
    params: Params


class TrainState(NamedTuple):
    """Everything a training step updates; the model and optimizer stay out of it."""

    step: jax.Array  # int32 scalar: updates applied so far
    params: Params  # the model's weights
    opt_state: optax.OptState  # Adam's moments and the schedule's step count


def _as_unit_float(images: jax.Array) -> jax.Array:
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def make_train_step(
    model: SmallCNN, tx: optax.GradientTransformation
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]:
    """Builds the pure update `step(state, images, labels) -> (state, metrics)`.

    Args:
      model: the classifier module.
      tx: the optimizer.

    Returns:
      A function to jit with the state donated; images are `uint8` (converted inside, so the
      host sends a quarter of the bytes) and labels `int32`. The metrics are the batch's mean
      cross-entropy and accuracy, left on the device.
    """

    def loss_fn(params: Params, x: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = model.apply(params, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == labels)

    def step(state: TrainState, images: jax.Array, labels: jax.Array) -> tuple[TrainState, Metrics]:
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, accuracy), grads = grad_fn(state.params, _as_unit_float(images), labels)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, opt_state), {"loss": loss, "accuracy": accuracy}

    return step


@functools.partial(jax.jit, static_argnums=0)
def _forward(model: SmallCNN, params: Params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    return model.apply(params, _as_unit_float(images), return_features=True)


def features_and_logits(
    classifier: Classifier, images: np.ndarray | jax.Array, batch_size: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Runs the classifier over many images, one jitted batch at a time.

    Args:
      classifier: the model and weights.
      images: `uint8` in `[0, 255]` or float in `[0, 1]`, `[N, 28, 28, 1]`.
      batch_size: images per forward pass; the last batch is padded, so one shape compiles.

    Returns:
      `(features float32[N, feature_dim], logits float32[N, num_classes])` on the host.

    Raises:
      ValueError: the images are not a non-empty `[N, 28, 28, 1]` batch.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (28, 28, 1) or not len(images):
        raise ValueError(f"images must be [N, 28, 28, 1] (NHWC), N > 0, got {images.shape}")
    features, logits = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        padded = np.pad(batch, ((0, batch_size - len(batch)), (0, 0), (0, 0), (0, 0)))
        batch_features, batch_logits = _forward(classifier.model, classifier.params, padded)
        features.append(batch_features[: len(batch)])
        logits.append(batch_logits[: len(batch)])
    features, logits = jax.device_get((features, logits))
    return np.concatenate(features), np.concatenate(logits)


def accuracy(classifier: Classifier, dataset: Dataset, batch_size: int = 500) -> float:
    """The fraction of `dataset` whose argmax prediction equals its label."""
    _, logits = features_and_logits(classifier, dataset.images, batch_size)
    return float(np.mean(np.argmax(logits, -1) == dataset.labels))


@functools.lru_cache(maxsize=4)
def _optimizer_and_step(
    model: SmallCNN, learning_rate: float, weight_decay: float, total_steps: int
) -> tuple[optax.GradientTransformation, Callable]:
    # Cached so that runs with one configuration (other seeds, say) reuse one compilation.
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, max(1, total_steps // 20), total_steps
    )
    tx = optax.adamw(schedule, weight_decay=weight_decay)
    return tx, jax.jit(make_train_step(model, tx), donate_argnums=(0,))


def train_classifier(
    train: Dataset,
    test: Dataset,
    *,
    seed: int = 0,
    epochs: int = 5,
    batch_size: int = 128,
    learning_rate: float = 2e-3,
    weight_decay: float = 1e-4,
    on_epoch: EpochLog | None = None,
) -> Classifier:
    """Trains `SmallCNN` with AdamW under a warmup-cosine schedule; deterministic given `seed`.

    Args:
      train: the training split (the last partial batch of each shuffled epoch is dropped).
      test: evaluated after every epoch, for `on_epoch`; it does not steer training.
      seed: initializes the weights and orders the epochs.
      epochs: passes over `train`.
      batch_size: examples per update.
      learning_rate: AdamW's peak rate, reached after 5% of the updates and then cosine-decayed
        to zero.
      weight_decay: AdamW's decoupled weight decay.
      on_epoch: called after each epoch with its number (from 1) and a dict of `train_loss`,
        `train_accuracy` (means over the epoch's updates) and `test_accuracy`.

    Returns:
      The trained classifier.

    Raises:
      ValueError: `epochs < 1`, or `batch_size` exceeds the training examples.
      FloatingPointError: the loss became NaN or infinite, naming the epoch.
    """
    steps_per_epoch = len(train) // batch_size
    if epochs < 1 or steps_per_epoch == 0:
        raise ValueError(
            f"need epochs >= 1 (got {epochs}) and batch_size <= {len(train)} training examples "
            f"(got batch_size={batch_size})"
        )
    model = SmallCNN()
    tx, step = _optimizer_and_step(model, learning_rate, weight_decay, epochs * steps_per_epoch)
    params = jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
    order_rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        order = order_rng.permutation(len(train))[: steps_per_epoch * batch_size]
        epoch_metrics = []
        for batch in order.reshape(steps_per_epoch, batch_size):
            state, metrics = step(state, train.images[batch], train.labels[batch])
            epoch_metrics.append(metrics)
        # The epoch's only host sync: the device ran ahead of the loop until here.
        means = {k: float(np.mean([m[k] for m in jax.device_get(epoch_metrics)])) for k in metrics}
        if not np.isfinite(means["loss"]):
            raise FloatingPointError(
                f"classifier loss is {means['loss']} in epoch {epoch} (updates "
                f"{(epoch - 1) * steps_per_epoch + 1}..{epoch * steps_per_epoch})"
            )
        if on_epoch is not None:
            test_accuracy = accuracy(Classifier(model, state.params), test)
            on_epoch(
                epoch,
                {
                    "train_loss": means["loss"],
                    "train_accuracy": means["accuracy"],
                    "test_accuracy": test_accuracy,
                },
            )
    return Classifier(model, state.params)


def save_classifier(classifier: Classifier, path: str | os.PathLike) -> None:
    """Writes the classifier's weights as flax msgpack (the module's defaults are its config)."""
    with open(path, "wb") as f:
        f.write(flax.serialization.to_bytes(classifier.params))


def load_classifier(dataset: str = "mnist", path: str | os.PathLike | None = None) -> Classifier:
    """Loads a classifier's weights: the one shipped for `dataset`, or the file at `path`.

    Args:
      dataset: a dataset with shipped weights (a key of `WEIGHTS_FILES`).
      path: a file written by `save_classifier`, which replaces the shipped one.

    Returns:
      The classifier; loads of a shipped file are cached, so repeated calls are free.

    Raises:
      NoClassifierError: no weights are shipped for `dataset`.
      ValueError: the file's weights do not fit `SmallCNN()`'s layers and shapes.
    """
    if path is not None:
        with open(path, "rb") as f:
            return _from_bytes(f.read())
    if dataset not in WEIGHTS_FILES:
        raise NoClassifierError(
            f"no classifier for dataset {dataset!r}; jaxgan can score {list(WEIGHTS_FILES)}"
        )
    return _load_shipped(dataset)


@functools.cache
def _load_shipped(dataset: str) -> Classifier:
    weights = importlib.resources.files("jaxgan.eval") / "assets" / WEIGHTS_FILES[dataset]
    return _from_bytes(weights.read_bytes())


def _from_bytes(data: bytes) -> Classifier:
    model = SmallCNN()
    template = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
    params = flax.serialization.from_bytes(target, data)  # checks the tree, not the shapes
    for (path, want), got in zip(
        jax.tree.leaves_with_path(target), jax.tree.leaves(params), strict=True
    ):
        if want.shape != got.shape or want.dtype != got.dtype:
            raise ValueError(
                f"classifier weights {jax.tree_util.keystr(path)}: {got.dtype}{list(got.shape)} "
                f"in the file, SmallCNN() needs {want.dtype}{list(want.shape)}"
            )
    return Classifier(model, jax.tree.map(jnp.asarray, params))
