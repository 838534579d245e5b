"""Sample quality at a glance during training: the classifier score and the classes covered of
each epoch's samples, in the feature space of the dataset's own classifier."""

from __future__ import annotations

import warnings

import numpy as np

from jaxgan.eval import metrics
from jaxgan.eval.classifier import NoClassifierError, load_classifier
from jaxgan.training.loop import SampleScorer


def classifier_scorer(dataset: str) -> SampleScorer | None:
    """A `SampleScorer` of the classifier score (one split) and the classes covered (at least 1%
    of the samples), or `None`, with a warning, for a dataset with no classifier."""
    try:
        classifier = load_classifier(dataset)
    except NoClassifierError as e:
        warnings.warn(f"{e}: the epochs' samples are not scored", stacklevel=2)
        return None

    def score(images: np.ndarray) -> dict[str, float]:
        _, probs = metrics.features(images, classifier)
        return {
            "classifier_score": metrics.classifier_score(probs)[0],
            "classes_covered": float(metrics.class_coverage(probs).num_covered),
        }

    return score
