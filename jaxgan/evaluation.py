"""Scoring trained runs: sample a checkpoint's generator and compare it with real MNIST.

`Evaluator` holds the real test images' classifier features, computed once, and scores any set
of images against them with every metric of `jaxgan.metrics`, plus the share of samples the
classifier assigns to each class. `evaluate_run` samples a run's generator in evaluation mode
(BatchNorm on its running statistics) and returns the scores of the samples beside the scores of
real training images (the reference a perfect generator would reach at the same sample count).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
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

    def score(self, images: np.ndarray, seed: int = 0) -> Scores:
        """Every metric of `images` (`uint8`, or float in `[0, 1]`); `seed` seeds KID."""
        feats, probs = metrics.features(images, self.classifier)
        values = metrics.evaluate_features(
            feats, probs, self.test_features, seed=seed, **self.metric_kwargs
        )
        fractions = metrics.class_coverage(probs).fractions
        return Scores(values, [float(f) for f in fractions])

    def reference(self, train_images: np.ndarray, num_samples: int, seed: int = 0) -> Scores:
        """The scores of `num_samples` real training images (`metrics.reference_metrics`)."""
        return self.score(metrics.reference_draw(train_images, num_samples, seed), seed)


def generate(
    run: Run, state: GANState, num_samples: int, seed: int = 0, batch_size: int = 1000
) -> np.ndarray:
    """Samples the generator in evaluation mode, as images in `[0, 1]` whatever its output.

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
    noise = jax.random.normal(jax.random.key(seed), (num_samples, run.config.latent_dim))
    generate_batch = jax.jit(run.generate)
    images = np.concatenate(
        [
            np.asarray(generate_batch(state, noise[i : i + batch_size]))
            for i in range(0, num_samples, batch_size)
        ]
    )
    if run.config.pixel_range == "symmetric":
        images = (images + 1) / 2
    return np.clip(images, 0, 1)


def evaluate_run(
    workdir: str | Path,
    evaluator: Evaluator,
    *,
    train_images: np.ndarray | None = None,
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
      step: which checkpoint; `None` for the newest.
      num_samples: generated images to score.
      seed: seeds the noise, KID's subsets and the reference draw.

    Returns:
      A JSON-ready dict: `workdir`, `step`, `num_samples`, `seed`, `config` (the run's settings),
      `generated` and, with `train_images`, `reference`, each `{"metrics", "class_fractions"}`.

    Raises:
      FileNotFoundError: the folder holds no run or no such checkpoint.
    """
    config, run, state = load_run(workdir, step)
    samples = generate(run, state, num_samples, seed)
    result: dict[str, Any] = {
        "workdir": str(workdir),
        "step": int(state.step),
        "num_samples": num_samples,
        "seed": seed,
        "config": dataclasses.asdict(config),
        "generated": dataclasses.asdict(evaluator.score(samples, seed)),
    }
    if train_images is not None:
        result["reference"] = dataclasses.asdict(
            evaluator.reference(train_images, num_samples, seed)
        )
    return result


def format_result(result: dict[str, Any]) -> str:
    """`evaluate_run`'s result as a console table, with a row of class fractions per column."""
    columns = {"generated": result["generated"]}
    if "reference" in result:
        columns["real reference (train vs test)"] = result["reference"]
    table = metrics.format_table({name: col["metrics"] for name, col in columns.items()})
    lines = [table, "", "share of samples per predicted class (0-9):"]
    for name, col in columns.items():
        lines.append(f"  {name}: " + " ".join(f"{f:.3f}" for f in col["class_fractions"]))
    return "\n".join(lines)
