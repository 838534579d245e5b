"""Measuring samples: a classifier per dataset, the metrics in its feature space, and the
evaluation of a training run against real data.

Above the training application (it reads runs and datasets); nothing below imports it. Names
load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxgan._lazy import lazy_exports

_EXPORTS = {
    "Classifier": "jaxgan.eval.classifier",
    "NoClassifierError": "jaxgan.eval.classifier",
    "load_classifier": "jaxgan.eval.classifier",
    "Evaluator": "jaxgan.eval.evaluation",
    "draw_samples": "jaxgan.eval.evaluation",
    "evaluate_run": "jaxgan.eval.evaluation",
    "format_result": "jaxgan.eval.evaluation",
    "classifier_scorer": "jaxgan.eval.quality",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from jaxgan.eval.classifier import Classifier as Classifier
    from jaxgan.eval.classifier import NoClassifierError as NoClassifierError
    from jaxgan.eval.classifier import load_classifier as load_classifier
    from jaxgan.eval.evaluation import Evaluator as Evaluator
    from jaxgan.eval.evaluation import draw_samples as draw_samples
    from jaxgan.eval.evaluation import evaluate_run as evaluate_run
    from jaxgan.eval.evaluation import format_result as format_result
    from jaxgan.eval.quality import classifier_scorer as classifier_scorer
