"""The strategy study: train every (model, strategy, seed), score each run.

A study is a list of `Group`s (a model, a pixel range, a number of epochs and the strategies to
train) crossed with the seeds. Each run is trained by `jaxgan.training.train`, the loop of
`scripts/train.py`, into `<out>/<model>-<pixel range>/<strategy>/seed<k>`; a run that is already
complete there is kept, and one that stopped early is resumed (a resumed run computes exactly
what an uninterrupted one does). Each final checkpoint is scored once with `jaxgan.eval`
and the scores are cached in the run's folder as `evaluation_step<N>.json`, keyed by everything
they depend on (step, sample count, seed and the test images), so rerunning the study only does
the work still missing.
`report` turns the results into the report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxgan import MODELS, PIXEL_RANGES, STRATEGIES
from jaxgan.eval import Evaluator, classifier_scorer, evaluate_run
from jaxgan.eval.classifier import accuracy
from jaxgan.models import BN_EPSILON
from jaxgan.training import Dataset, TrainConfig, read_metrics, saved_steps, train


class StudyError(RuntimeError):
    """A run could not be trained or reused; the message names its folder."""


@dataclasses.dataclass(frozen=True)
class Group:
    """Runs that share a model, a pixel range and a length, one per strategy and seed.

    Attributes:
      model: `"mlp"` or `"dcgan"`.
      pixel_range: `"unit"` ([0, 1], sigmoid G) or `"symmetric"` ([-1, 1], tanh G).
      epochs: passes over the training set.
      strategies: the strategies to train, in report order.
    """

    model: str
    pixel_range: str
    epochs: int
    strategies: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> Group:
        """Reads `MODEL:PIXEL_RANGE:EPOCHS:STRATEGY[,STRATEGY...]` (`all` for all five)."""
        parts = spec.split(":")
        if len(parts) != 4:
            raise ValueError(f"a group is MODEL:PIXEL_RANGE:EPOCHS:STRATEGIES, got {spec!r}")
        model, pixel_range, epochs, strategies = parts
        names = list(STRATEGIES) if strategies == "all" else strategies.split(",")
        if model not in MODELS:
            raise ValueError(f"in group {spec!r}: model must be one of {list(MODELS)}")
        if pixel_range not in PIXEL_RANGES:
            raise ValueError(f"in group {spec!r}: pixel range must be one of {list(PIXEL_RANGES)}")
        unknown = [s for s in names if s not in STRATEGIES]
        if unknown or not epochs.isdigit() or int(epochs) < 1:
            raise ValueError(
                f"in group {spec!r}: epochs must be a positive integer and strategies 'all' or "
                f"names from {list(STRATEGIES)}"
            )
        return cls(model, pixel_range, int(epochs), tuple(names))

    @property
    def name(self) -> str:
        return f"{self.model}-{self.pixel_range}"

    def spec(self) -> str:
        """The `--group` argument that describes this group."""
        names = "all" if self.strategies == tuple(STRATEGIES) else ",".join(self.strategies)
        return f"{self.model}:{self.pixel_range}:{self.epochs}:{names}"


@dataclasses.dataclass(frozen=True)
class Study:
    """Everything that decides what the study computes.

    Attributes:
      groups: the groups of runs.
      seeds: every (group, strategy) is trained once per seed.
      batch_size: images per update, every run.
      features: the DCGAN's base width (the MLP ignores it).
      bn_epsilon: every BatchNorm's epsilon.
      num_samples: generated images scored per run (and real ones for the reference).
      out: folder of the runs.
      data_dir: folder of the MNIST IDX files.
      train_examples: train on the first N training images only (`None`: all).
      trend_groups: names of groups whose runs also get their previous checkpoint scored (one
        epoch before the end), to show whether the scores were still moving.
    """

    groups: tuple[Group, ...]
    seeds: tuple[int, ...]
    batch_size: int
    features: int
    num_samples: int
    out: Path
    data_dir: str
    train_examples: int | None = None
    trend_groups: tuple[str, ...] = ()
    bn_epsilon: float = BN_EPSILON
    seed: int = 0  # seeds the scoring: noise, KID's subsets and the reference draw

    def workdir(self, group: Group, strategy: str, seed: int) -> Path:
        return self.out / group.name / strategy / f"seed{seed}"

    def train_size(self, train_set: Dataset) -> int:
        """The training examples each run uses."""
        return min(self.train_examples or len(train_set), len(train_set))

    def config(self, group: Group, strategy: str, seed: int) -> TrainConfig:
        """The training settings of one run; the rest are `TrainConfig`'s defaults."""
        return TrainConfig(
            model=group.model, strategy=strategy, pixel_range=group.pixel_range,
            epochs=group.epochs, batch_size=self.batch_size, features=self.features,
            bn_epsilon=self.bn_epsilon, seed=seed, data_dir=self.data_dir,
            train_examples=self.train_examples,
        )  # fmt: skip


def ensure_trained(
    study: Study, group: Group, strategy: str, seed: int, train_set: Dataset
) -> bool:
    """Trains one run with the training loop unless its folder already holds it complete.

    Args:
      study: the study.
      group, strategy, seed: which run.
      train_set: the training images (all of them; `study.train_examples` takes the first N).

    Returns:
      Whether any training was done (`False`: the run was complete already).

    Raises:
      StudyError: the folder holds a longer run.
      ConfigError: the folder holds a run with other settings.
    """
    workdir = study.workdir(group, strategy, seed)
    config = study.config(group, strategy, seed)
    target = group.epochs * config.steps_per_epoch(study.train_size(train_set))
    latest = max(saved_steps(workdir), default=0)
    if latest == target:
        return False
    if latest > target:
        raise StudyError(f"{workdir} holds a run of {latest} steps, more than {target}")
    print(f"training {workdir} ({'resumed' if latest else 'new'})", flush=True)
    # A progress bar per run where a person watches; plain lines in a log.
    train(config, workdir, resume=latest > 0, dataset=train_set, progress=sys.stderr.isatty(),
          sample_scorer=classifier_scorer(config.dataset))  # fmt: skip
    return True


def evaluation(study: Study, workdir: Path, evaluator: Evaluator, step: int) -> dict[str, Any]:
    """`evaluate_run` of a run's checkpoint at `step`, cached in the run's folder under a key of
    everything the scores depend on."""
    cache = workdir / f"evaluation_step{step}.json"
    key = {"step": step, "num_samples": study.num_samples, "seed": study.seed,
           "test_images": evaluator.fingerprint}  # fmt: skip
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return cached
    print(f"scoring {workdir} at step {step}", flush=True)
    result = evaluate_run(workdir, evaluator, step=step, num_samples=study.num_samples,
                          seed=study.seed)  # fmt: skip
    result["key"] = key
    cache.write_text(json.dumps(result, indent=1) + "\n")
    return result


def reference(study: Study, evaluator: Evaluator, train_set: Dataset) -> dict[str, Any]:
    """The real-data reference (training images against test images), cached in `study.out`."""
    cache = study.out / "reference.json"
    key = {"num_samples": study.num_samples, "seed": study.seed,
           "test_images": evaluator.fingerprint, "train_images": len(train_set)}  # fmt: skip
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return cached
    scores = evaluator.reference(train_set.images, train_set.labels, study.num_samples, study.seed)
    result = {"num_samples": study.num_samples, "key": key, **dataclasses.asdict(scores)}
    study.out.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=1) + "\n")
    return result


def training_summary(workdir: Path) -> dict[str, float]:
    """From a run's `metrics.jsonl`: the last epoch's mean losses and D outputs, the time its
    dispatches took (seconds, compilation included), and its peak speed (the 90th percentile of
    the dispatches' steps per second, which other jobs on shared cores disturb least)."""
    records = read_metrics(workdir / "metrics.jsonl")
    last_epoch = [r for r in records if r["epoch"] == records[-1]["epoch"]]
    summary = {
        f"last_epoch_{name}": float(np.mean([r[name] for r in last_epoch]))
        for name in ("g_loss", "d_loss", "d_real", "d_fake")
    }
    steps = np.diff([0] + [r["step"] for r in records])
    rates = np.asarray([r["steps_per_sec"] for r in records])
    summary["train_seconds"] = float(np.sum(steps / rates))
    summary["peak_steps_per_sec"] = float(np.percentile(rates, 90))
    return summary


def run_study(study: Study, train_set: Dataset, test_set: Dataset) -> dict[str, Any]:
    """Trains what is missing, scores every run, and collects the results.

    Args:
      study: the study.
      train_set: the MNIST training set (its size, or `study.train_examples`, sets the steps
        per epoch, and the reference draws from its images).
      test_set: the images every run is scored against, with their labels.

    Returns:
      `{"train_examples", "num_test_images", "classifier_accuracy", "feature_dim", "machine",
      "reference", "runs"}`; each run is a dict with `group`, `strategy`, `seed`, `workdir`,
      `evaluation` (`evaluate_run`'s result), `previous` (the previous checkpoint's, for trend
      groups) and `training` (`training_summary`).
    """
    train_size = study.train_size(train_set)
    steps_per_epoch = train_size // study.batch_size
    evaluator = Evaluator(test_set.images)
    device = jax.devices()[0]
    results: dict[str, Any] = {
        "train_examples": train_size,
        "num_test_images": len(test_set),
        "classifier_accuracy": accuracy(evaluator.classifier, test_set),
        "feature_dim": int(evaluator.test_features.shape[1]),
        "machine": f"{os.cpu_count()} CPU cores, jax on {device.platform} ({device.device_kind})",
        "reference": reference(study, evaluator, train_set),
        "runs": [],
    }
    for seed in study.seeds:  # seed-major: a partial study already compares every strategy
        for group in study.groups:
            for strategy in group.strategies:
                ensure_trained(study, group, strategy, seed, train_set)
    for group in study.groups:
        for strategy in group.strategies:
            for seed in study.seeds:
                workdir = study.workdir(group, strategy, seed)
                run = {"group": group.name, "strategy": strategy, "seed": seed}
                run["workdir"] = str(workdir)
                final = group.epochs * steps_per_epoch
                run["evaluation"] = evaluation(study, workdir, evaluator, final)
                previous = final - steps_per_epoch
                if group.name in study.trend_groups and previous in saved_steps(workdir):
                    run["previous"] = evaluation(study, workdir, evaluator, previous)
                run["training"] = training_summary(workdir)
                results["runs"].append(run)
    return results
