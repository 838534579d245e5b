"""Score a trained run: `python scripts/evaluate.py RUN_DIR --data-dir DIR [--json OUT]`.

Samples the run's newest (or `--step`) checkpoint with its generator in evaluation mode, and
prints every metric of `jaxgan.metrics` against the MNIST test images beside the same metrics
for as many real training images (the real-data reference). A conditional run (as its saved
config says) is sampled with balanced labels and also scored by `class_accuracy`, overall and
per digit, beside the classifier's accuracy on the real images with their true labels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxgan.data import DATA_DIR_ENV, DataError, DataUnavailableError, load_dataset

EXIT_FAILED = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evaluate.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="a run's workdir (as scripts/train.py wrote it)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    p.add_argument("--num-samples", type=int, default=10_000, help="generated images to score")
    p.add_argument(
        "--data-dir",
        default=None,
        help=f"folder of MNIST-format IDX files (default: ${DATA_DIR_ENV}, then TFDS)",
    )
    p.add_argument(
        "--test-images", type=int, default=None, help="use the first N test images (default: all)"
    )
    p.add_argument("--seed", type=int, default=0, help="noise, KID subsets and reference draw")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status."""
    args = parser().parse_args(argv)
    for name in ("num_samples", "test_images"):
        value = getattr(args, name)
        if value is not None and value < 10:
            return _fail(f"--{name.replace('_', '-')} must be at least 10, got {value}")
    if not (args.checkpoint / "config.json").is_file():
        return _fail(f"{args.checkpoint} holds no training run (no config.json)")

    from jaxgan.config import ConfigError
    from jaxgan.evaluation import Evaluator, evaluate_run, format_result  # jax starts here

    try:
        train = load_dataset("mnist", "train", args.data_dir)
        test = load_dataset("mnist", "test", args.data_dir)
    except (DataUnavailableError, DataError, FileNotFoundError) as e:
        return _fail(f"data: {e}")
    if args.num_samples > len(train):
        return _fail(f"--num-samples exceeds the {len(train)} training images of the reference")
    evaluator = Evaluator(test.images[: args.test_images])
    try:
        result = evaluate_run(
            args.checkpoint,
            evaluator,
            train_images=train.images,
            train_labels=train.labels,
            step=args.step,
            num_samples=args.num_samples,
            seed=args.seed,
        )
    except (FileNotFoundError, ConfigError) as e:
        return _fail(str(e))
    result["num_test_images"] = len(evaluator.test_features)
    print(f"{args.checkpoint} at step {result['step']}: {args.num_samples} samples against "
          f"{result['num_test_images']} test images")  # fmt: skip
    print(format_result(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _fail(message: str) -> int:
    print(f"evaluate.py: {message}", file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
