"""`jaxgan-evaluate`: score a trained run; `scripts/train_classifier.py`: train a classifier.

    jaxgan-evaluate runs/latest                                  # data from the run's settings
    jaxgan-evaluate runs/latest --data-dir ../shared/data/mnist --json scores.json
    python scripts/train_classifier.py --dataset fashion_mnist \\
        --data-dir /usr/share/datasets/fashion-mnist --out fashion_mnist_classifier.msgpack

`jaxgan-evaluate` samples the run's newest (or `--step`) checkpoint with its generator in
evaluation mode and prints every metric of `jaxgan.eval.metrics` against the test images of the
run's dataset, in that dataset's classifier, beside the same metrics for as many real training
images (the real-data reference). A conditional run is sampled with balanced labels and also
scored by `class_accuracy`, overall and per class, beside the classifier's accuracy on the real
images with their true labels. A dataset with no classifier stops with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from jaxgan.choices import DATASETS
from jaxgan.training.cli import fail, warnings_to_stderr
from jaxgan.training.config import ConfigError, TrainConfig

EVALUATE, TRAIN_CLASSIFIER = "jaxgan-evaluate", "train_classifier.py"


def evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=EVALUATE,
        description="Score a trained run against real images, in its dataset's classifier.",
    )
    p.add_argument("run_dir", type=Path, help="a run's workdir (as jaxgan-train wrote it)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    p.add_argument(
        "--num-samples", type=int, default=10_000, help="generated images to score (default: 10000)"
    )
    p.add_argument(
        "--data-dir", default=None,
        help="folder of the dataset's IDX files (default: the run's, else $JAXGAN_DATA_DIR, "
        "then TFDS)",
    )  # fmt: skip
    p.add_argument(
        "--test-images", type=int, default=None, help="use the first N test images (default: all)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="noise, KID subsets and reference draw (default: 0)"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def evaluate_main(argv: list[str] | None = None) -> int:
    """Runs `jaxgan-evaluate`; returns the exit status."""
    args = evaluate_parser().parse_args(argv)
    for name in ("num_samples", "test_images"):
        value = getattr(args, name)
        if value is not None and value < 10:
            return fail(EVALUATE, f"--{name.replace('_', '-')} must be at least 10, got {value}")
    if not (args.run_dir / "config.json").is_file():
        return fail(EVALUATE, f"{args.run_dir} holds no training run (no config.json)")
    try:
        config = TrainConfig.load(args.run_dir / "config.json")
    except ConfigError as e:
        return fail(EVALUATE, str(e))

    from tqdm import tqdm  # jax starts below

    from jaxgan.eval.classifier import NoClassifierError, load_classifier
    from jaxgan.eval.evaluation import DatasetMismatchError, Evaluator, evaluate_run, format_result
    from jaxgan.training.data import DataError, DataUnavailableError, load_dataset

    try:
        classifier = load_classifier(config.dataset)
    except NoClassifierError as e:
        return fail(EVALUATE, f"cannot score {args.run_dir}: {e}")
    data_dir = args.data_dir or _saved_data_dir(config)
    with warnings_to_stderr(EVALUATE):
        try:
            train = load_dataset(config.dataset, "train", data_dir)
            test = load_dataset(config.dataset, "test", data_dir)
        except (DataUnavailableError, DataError, FileNotFoundError) as e:
            return fail(EVALUATE, f"data: {e}")
        if args.num_samples > len(train):
            return fail(EVALUATE, f"--num-samples exceeds the {len(train)} training images "
                        f"of the reference")  # fmt: skip
        stages = tqdm(total=12, unit="stage", disable=args.no_progress, dynamic_ncols=True)

        def progress(name: str) -> None:
            stages.set_description(name)
            stages.update(1)

        try:
            progress("test images' features")
            evaluator = Evaluator(test.images[: args.test_images], config.dataset, classifier)
            result = evaluate_run(
                args.run_dir, evaluator, train_images=train.images, train_labels=train.labels,
                step=args.step, num_samples=args.num_samples, seed=args.seed, progress=progress,
            )  # fmt: skip
        except DatasetMismatchError as e:
            return fail(EVALUATE, f"the real images in {train.source}: {e}")
        except (FileNotFoundError, ConfigError) as e:
            return fail(EVALUATE, str(e))
        finally:
            stages.close()
    result["num_test_images"] = len(evaluator.test_features)
    print(f"{args.run_dir} at step {result['step']}: {args.num_samples} samples against "
          f"{result['num_test_images']} {config.dataset} test images, in the {config.dataset} "
          f"classifier's feature space")  # fmt: skip
    print(format_result(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _saved_data_dir(config: TrainConfig) -> str | None:
    """The run's own data folder, when it is still there."""
    if config.data_dir and Path(config.data_dir).is_dir():
        return config.data_dir
    return None


def train_classifier_main(argv: list[str] | None = None) -> int:
    """Trains the classifier of a dataset, prints its test accuracy and writes its weights."""
    p = argparse.ArgumentParser(
        prog=TRAIN_CLASSIFIER,
        description="Train the small CNN that scores a dataset's samples, and write its weights.",
    )
    p.add_argument(
        "--dataset", choices=DATASETS, default="mnist", help="which dataset (default: mnist)"
    )
    p.add_argument("--data-dir", required=True, help="folder of the dataset's IDX files")
    p.add_argument("--seed", type=int, default=0, help="weight init and epoch order (default: 0)")
    p.add_argument(
        "--epochs", type=int, default=5, help="passes over the training images (default: 5)"
    )
    p.add_argument("--out", type=Path, required=True, help="weights file to write")
    args = p.parse_args(argv)

    from jaxgan.eval.classifier import accuracy, save_classifier, train_classifier
    from jaxgan.training.data import DataError, load_idx_split

    try:
        train = load_idx_split(args.data_dir, "train")
        test = load_idx_split(args.data_dir, "test")
    except (DataError, FileNotFoundError) as e:
        return fail(TRAIN_CLASSIFIER, f"data: {e}")
    start = time.perf_counter()

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        print(
            f"epoch {epoch}/{args.epochs}: train loss {metrics['train_loss']:.4f}, "
            f"train accuracy {metrics['train_accuracy']:.4f}, "
            f"test accuracy {metrics['test_accuracy']:.4f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    classifier = train_classifier(train, test, seed=args.seed, epochs=args.epochs,
                                  on_epoch=on_epoch)  # fmt: skip
    seconds = time.perf_counter() - start
    test_accuracy = accuracy(classifier, test)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_classifier(classifier, args.out)
    print(
        f"{args.dataset}: test accuracy {test_accuracy:.4f} on {len(test)} images; trained in "
        f"{seconds:.0f} s; wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(evaluate_main())
