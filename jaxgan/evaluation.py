"""Scoring trained runs: sample a checkpoint's generator and compare it with real MNIST.

`Evaluator` holds the real test images' classifier features, computed once, and scores any set
of images against them with every metric of `jaxgan.metrics`, plus the share of samples the
classifier assigns to each class. `evaluate_run` samples a run's generator in evaluation mode
(BatchNorm on its running statistics) and returns the scores of the samples beside the scores of
real training images (the reference a perfect generator would reach at the same sample count).
A conditional run is sampled with balanced labels and also scored by `class_accuracy`: how often
the classifier sees the digit each sample was drawn for; its reference is the classifier's
accuracy on the drawn training images with their true labels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan import metrics
from jaxgan.classifier import Classifier, load_classifier
from jaxgan.state import GANState
from jaxgan.train import Run, load_run


@dataclasses.dataclass(frozen=True)
class Scores:
    """The metrics of one image set against the test images.

    Attributes:
      metrics: `jaxgan.metrics.evaluate_features`'s flat dict of floats.
      class_fractions: share of the images predicted as each class, `[num_classes]`.
    """

    metrics: dict[str, float]
    class_fractions: list[float]


class Evaluator:
    """Scores image sets against one fixed set of real images.

    Args:
      test_images: the real images every set is compared with, `uint8[N, 28, 28, 1]`.
      classifier: defaults to the shipped weights.
      **metric_kwargs: passed to `jaxgan.metrics.evaluate_features` (`kid_subsets`, ...).
    """

    def __init__(
        self, test_images: np.ndarray, classifier: Classifier | None = None, **metric_kwargs: Any
    ):
        self.classifier = classifier or load_classifier()
        self.test_features, _ = metrics.features(test_images, self.classifier)
        self.metric_kwargs = metric_kwargs
        # Names the test images, for caches of scores computed against them.
        digest = hashlib.sha256(np.ascontiguousarray(test_images).tobytes()).hexdigest()[:16]
        self.fingerprint = f"{len(test_images)} images, sha256 {digest}"

    def score(self, images: np.ndarray, seed: int = 0, labels: np.ndarray | None = None) -> Scores:
        """Every metric of `images` (`uint8`, or float in `[0, 1]`); `seed` seeds KID.

        With `labels` (the class of each image) the metrics include `class_accuracy` and
        `class_accuracy_<k>` (see `jaxgan.metrics.evaluate_features`).
        """
        feats, probs = metrics.features(images, self.classifier)
        values = metrics.evaluate_features(
            feats, probs, self.test_features, seed=seed, labels=labels, **self.metric_kwargs
        )
        fractions = metrics.class_coverage(probs).fractions
        return Scores(values, [float(f) for f in fractions])

    def reference(
        self,
        train_images: np.ndarray,
        num_samples: int,
        seed: int = 0,
        train_labels: np.ndarray | None = None,
    ) -> Scores:
        """The scores of `num_samples` real training images (`metrics.reference_metrics`).

        With `train_labels` the drawn images are scored with their true labels too, which
        adds the classifier's accuracy on them (`class_accuracy`).
        """
        images = metrics.reference_draw(train_images, num_samples, seed)
        labels = None
        if train_labels is not None:
            if len(train_labels) != len(train_images):
                raise ValueError(f"{len(train_labels)} labels for {len(train_images)} images")
            labels = metrics.reference_draw(train_labels, num_samples, seed)
        return self.score(images, seed, labels)


def balanced_labels(num_samples: int, num_classes: int) -> np.ndarray:
    """`int32[num_samples]` cycling through the classes, `0, 1, ..., K-1, 0, 1, ...`.

    Every class gets `num_samples // num_classes` labels, and the first
    `num_samples % num_classes` classes one more; every prefix is as balanced as its length
    allows, so the labels of any batch of samples are too.
    """
    return np.arange(num_samples, dtype=np.int32) % num_classes


def generate(
    run: Run, state: GANState, num_samples: int, seed: int = 0, batch_size: int = 1000
) -> np.ndarray:
    """Samples the generator in evaluation mode, as images in `[0, 1]` whatever its output.

    A conditional generator draws the classes of `balanced_labels(num_samples, num_classes)`:
    image `i` shows class `i % num_classes`.

    Args:
      run: the run's networks (`Run.build(config)`).
      state: its trained state.
      num_samples: how many images.
      seed: seeds the noise, `N(0, 1)` of shape `[num_samples, latent_dim]`.
      batch_size: images per generator call.

    Returns:
      `float32[num_samples, 28, 28, 1]` in `[0, 1]`; a tanh generator's `[-1, 1]` is mapped
      with `(x + 1) / 2`.
    """
    config = run.config
    noise = jax.random.normal(jax.random.key(seed), (num_samples, config.latent_dim))
    if config.conditional:
        noise = (noise, jnp.asarray(balanced_labels(num_samples, config.num_classes)))
    generate_batch = jax.jit(run.generate)
    batches = [
        jax.tree.map(operator.itemgetter(slice(i, i + batch_size)), noise)
        for i in range(0, num_samples, batch_size)
    ]
    images = np.concatenate([np.asarray(generate_batch(state, batch)) for batch in batches])
    if config.pixel_range == "symmetric":
        images = (images + 1) / 2
    return np.clip(images, 0, 1)


def evaluate_run(
    workdir: str | Path,
    evaluator: Evaluator,
    *,
    train_images: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    step: int | None = None,
    num_samples: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Samples a trained run and scores the samples (and real training images) against the test
    images.

    Args:
      workdir: the run's folder (see `jaxgan.train.load_run`).
      evaluator: holds the test images.
      train_images: when given, the same number of real training images is scored too.
      train_labels: the labels of `train_images`; required with them for a conditional run,
        whose reference then includes the classifier's accuracy on the drawn images.
      step: which checkpoint; `None` for the newest.
      num_samples: generated images to score.
      seed: seeds the noise, KID's subsets and the reference draw.

    Returns:
      A JSON-ready dict: `workdir`, `step`, `num_samples`, `seed`, `config` (the run's settings),
      `generated` and, with `train_images`, `reference`, each `{"metrics", "class_fractions"}`.
      For a conditional run both columns' metrics include `class_accuracy` and
      `class_accuracy_<k>` per class: the generated images against the labels `generate`
      drew them for, the real ones against their true labels.

    Raises:
      FileNotFoundError: the folder holds no run or no such checkpoint.
      ValueError: a conditional run given `train_images` without `train_labels`.
    """
    config, run, state = load_run(workdir, step)
    labels = None
    if config.conditional:
        if train_images is not None and train_labels is None:
            raise ValueError("a conditional run's reference needs train_labels")
        labels = balanced_labels(num_samples, config.num_classes)
    samples = generate(run, state, num_samples, seed)
    result: dict[str, Any] = {
        "workdir": str(workdir),
        "step": int(state.step),
        "num_samples": num_samples,
        "seed": seed,
        "config": dataclasses.asdict(config),
        "generated": dataclasses.asdict(evaluator.score(samples, seed, labels)),
    }
    if train_images is not None:
        result["reference"] = dataclasses.asdict(
            evaluator.reference(
                train_images, num_samples, seed, train_labels if config.conditional else None
            )
        )
    return result


def format_result(result: dict[str, Any]) -> str:
    """`evaluate_run`'s result as a console table, with a row of class fractions per column and,
    for a conditional run, a row of accuracies per requested class."""
    columns = {"generated": result["generated"]}
    if "reference" in result:
        columns["real reference (train vs test)"] = result["reference"]
    table = metrics.format_table(
        {
            name: {k: v for k, v in col["metrics"].items() if not k.startswith("class_accuracy_")}
            for name, col in columns.items()
        }
    )
    lines = [table, "", "share of samples per predicted class (0-9):"]
    lines += _rows({name: col["class_fractions"] for name, col in columns.items()})
    if "class_accuracy" in result["generated"]["metrics"]:
        num_classes = len(result["generated"]["class_fractions"])
        keys = [f"class_accuracy_{k}" for k in range(num_classes)]
        lines += ["", "class_accuracy per requested class (0-9):"]
        lines += _rows({name: [col["metrics"][k] for k in keys] for name, col in columns.items()})
    return "\n".join(lines)


def _rows(rows: dict[str, list[float]]) -> list[str]:
    return [f"  {name}: " + " ".join(f"{v:.3f}" for v in values) for name, values in rows.items()]
