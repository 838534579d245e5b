"""Scoring trained runs: sample a checkpoint's generator and compare it with real images.

`Evaluator` holds the real test images' features in the dataset's own classifier, computed
once, and scores any set of images against them with every metric of `jaxgan.eval.metrics`,
plus the share of samples the classifier assigns to each class. `evaluate_run` samples a run's
generator in evaluation mode (BatchNorm on its running statistics) and returns the scores of
the samples beside those of real training images (the reference a perfect generator would reach
at the same sample count). A conditional run is sampled with balanced labels and also scored by
`class_accuracy`: how often the classifier sees the class each sample was drawn for; its
reference is the classifier's accuracy on the drawn training images with their true labels.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from jaxgan.choices import CLASS_NAMES, NUM_CLASSES
from jaxgan.eval import metrics
from jaxgan.eval.classifier import Classifier, load_classifier
from jaxgan.models import to_unit_range
from jaxgan.sampling import Variables, balanced_labels, sample
from jaxgan.training.config import TrainConfig
from jaxgan.training.run import load_run

# Below this accuracy on real labelled images, the images are not the classifier's dataset:
# each shipped classifier scores above 0.9 on its own test set, and 0.1 is chance.
MIN_REAL_ACCURACY = 0.5
Progress = Callable[[str], None]  # told the name of each stage as it starts


class DatasetMismatchError(ValueError):
    """Real images that the dataset's classifier does not recognise as that dataset."""


@dataclasses.dataclass(frozen=True)
class Scores:
    """The metrics of one image set against the test images.

    Attributes:
      metrics: `jaxgan.eval.metrics.evaluate_features`'s flat dict of floats.
      class_fractions: share of the images predicted as each class, `[num_classes]`.
    """

    metrics: dict[str, float]
    class_fractions: list[float]


class Evaluator:
    """Scores image sets against one fixed set of real images of a dataset.

    Args:
      test_images: the real images every set is compared with, `uint8[N, 28, 28, 1]`.
      dataset: which dataset they are; its shipped classifier scores them.
      classifier: replaces the shipped one.
      **metric_kwargs: passed to `jaxgan.eval.metrics.evaluate_features` (`kid_subsets`, ...).

    Raises:
      NoClassifierError: no classifier is shipped for `dataset`.
    """

    def __init__(
        self,
        test_images: np.ndarray,
        dataset: str = "mnist",
        classifier: Classifier | None = None,
        **metric_kwargs: Any,
    ):
        self.dataset = dataset
        self.classifier = classifier or load_classifier(dataset)
        self.test_features, _ = metrics.features(test_images, self.classifier)
        self.metric_kwargs = metric_kwargs
        # Names the test images, for caches of scores computed against them.
        digest = hashlib.sha256(np.ascontiguousarray(test_images).tobytes()).hexdigest()[:16]
        self.fingerprint = f"{dataset}: {len(test_images)} images, sha256 {digest}"

    def score(
        self,
        images: np.ndarray,
        seed: int = 0,
        labels: np.ndarray | None = None,
        progress: Progress | None = None,
    ) -> Scores:
        """Every metric of `images` (`uint8`, or float in `[0, 1]`); `seed` seeds KID.

        With `labels` (the class of each image) the metrics include `class_accuracy` and
        `class_accuracy_<k>` (see `jaxgan.eval.metrics.evaluate_features`).
        """
        if progress:
            progress("classifier features")
        feats, probs = metrics.features(images, self.classifier)
        values = metrics.evaluate_features(
            feats, probs, self.test_features, seed=seed, labels=labels, progress=progress,
            **self.metric_kwargs,
        )  # fmt: skip
        fractions = metrics.class_coverage(probs).fractions
        return Scores(values, [float(f) for f in fractions])

    def reference(
        self,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        num_samples: int,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> Scores:
        """The scores of `num_samples` real training images, with the classifier's accuracy on
        their true labels (`class_accuracy`).

        Raises:
          DatasetMismatchError: the classifier gets fewer than `MIN_REAL_ACCURACY` of the
            labels right: the images are not this evaluator's dataset.
        """
        if len(train_labels) != len(train_images):
            raise ValueError(f"{len(train_labels)} labels for {len(train_images)} images")
        images = reference_draw(train_images, num_samples, seed)
        labels = reference_draw(train_labels, num_samples, seed)
        scores = self.score(images, seed, labels, progress)
        accuracy = scores.metrics["class_accuracy"]
        if accuracy < MIN_REAL_ACCURACY:
            raise DatasetMismatchError(
                f"the {self.dataset} classifier gets only {accuracy:.0%} of these real images' "
                f"labels right: they are not {self.dataset}; score them against their own "
                f"dataset (jaxgan-evaluate: --data-dir, the folder of the run's dataset's IDX "
                f"files)"
            )
        return scores


def reference_draw(train_images: np.ndarray, num_samples: int, seed: int = 0) -> np.ndarray:
    """The training images the reference scores, drawn without replacement.

    The draw depends only on `len(train_images)`, `num_samples` and `seed`, so passing the
    training labels instead draws the labels of the same images.
    """
    draw = np.random.default_rng(seed).choice(len(train_images), num_samples, replace=False)
    return np.asarray(train_images)[np.sort(draw)]


def draw_samples(
    config: TrainConfig,
    generator: nn.Module,
    state: Variables,
    num_samples: int,
    seed: int = 0,
    batch_size: int = 1000,
) -> np.ndarray:
    """`jaxgan.sample` of a run's generator, as `float32[N, 28, 28, 1]` in `[0, 1]`.

    The noise is `N(0, 1)` from `jax.random.key(seed)`; a conditional generator draws the
    classes `balanced_labels(num_samples, ...)`: image `i` shows class `i % num_classes`.
    """
    labels = None if config.num_classes is None else balanced_labels(num_samples, NUM_CLASSES)
    images = sample(generator, state, jax.random.key(seed), labels=labels, num=num_samples,
                    batch_size=batch_size)  # fmt: skip
    return np.clip(np.asarray(to_unit_range(images, config.pixel_range)), 0, 1)


def evaluate_run(
    workdir: str | Path,
    evaluator: Evaluator,
    *,
    train_images: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    step: int | None = None,
    num_samples: int = 10_000,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Samples a trained run and scores the samples (and real training images) against the test
    images.

    Args:
      workdir: the run's folder (see `jaxgan.training.load_run`).
      evaluator: holds the test images, of the run's dataset.
      train_images: when given, the same number of real training images is scored too.
      train_labels: the labels of `train_images` (required with them).
      step: which checkpoint; `None` for the newest.
      num_samples: generated images to score.
      seed: seeds the noise, KID's subsets and the reference draw.
      progress: told each stage's name as it starts.

    Returns:
      A JSON-ready dict: `workdir`, `step`, `num_samples`, `seed`, `dataset`, `config` (the
      run's settings), `generated` and, with `train_images`, `reference`, each
      `{"metrics", "class_fractions"}`. For a conditional run the generated column's metrics
      include `class_accuracy` and `class_accuracy_<k>` per class (against the labels the
      samples were drawn for); the reference's always do (against the true labels).

    Raises:
      FileNotFoundError: the folder holds no run or no such checkpoint.
      ValueError: the run is of another dataset than the evaluator, or train images come
        without labels; `DatasetMismatchError`: the train images are not the dataset.
    """
    config, run, state = load_run(workdir, step)
    if config.dataset != evaluator.dataset:
        raise ValueError(
            f"{workdir} was trained on {config.dataset}; this evaluator scores {evaluator.dataset}"
        )
    if train_images is not None and train_labels is None:
        raise ValueError("the real-data reference needs the training labels too")
    result: dict[str, Any] = {
        "workdir": str(workdir),
        "step": int(state.step),
        "num_samples": num_samples,
        "seed": seed,
        "dataset": config.dataset,
        "config": dataclasses.asdict(config),
    }
    if train_images is not None:  # first: it checks that the images are the dataset
        reference = evaluator.reference(train_images, train_labels, num_samples, seed, progress)
        result["reference"] = dataclasses.asdict(reference)
    if progress:
        progress("sampling")
    samples = draw_samples(config, run.generator, state, num_samples, seed)
    labels = None if config.num_classes is None else balanced_labels(num_samples, NUM_CLASSES)
    result["generated"] = dataclasses.asdict(evaluator.score(samples, seed, labels, progress))
    return result


def format_result(result: dict[str, Any]) -> str:
    """`evaluate_run`'s result as a console table, with a row of class shares per column and,
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
    names = CLASS_NAMES[result["dataset"]]
    lines = [table, "", "share of samples per predicted class:"]
    lines += _rows(names, {name: col["class_fractions"] for name, col in columns.items()})
    if "class_accuracy_0" in result["generated"]["metrics"]:
        keys = [f"class_accuracy_{k}" for k in range(len(names))]
        lines += ["", "class_accuracy per requested class:"]
        lines += _rows(
            names, {name: [col["metrics"][k] for k in keys] for name, col in columns.items()}
        )
    return "\n".join(lines)


def _rows(names: tuple[str, ...], rows: dict[str, list[float]]) -> list[str]:
    width = max(map(len, names))
    header = "  " + " " * max(map(len, rows)) + "  " + " ".join(n.rjust(width) for n in names)
    return [header] + [
        f"  {name.ljust(max(map(len, rows)))}  " + " ".join(f"{v:.3f}".rjust(width) for v in row)
        for name, row in rows.items()
    ]
