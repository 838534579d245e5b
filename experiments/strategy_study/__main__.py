"""Train every strategy on the same seeds and data, score each run, and write the report.

    python -m experiments.strategy_study --data-dir ../shared/data/mnist \\
        --recipes runs/recipes/mlp1/results.json

Runs land in --out (one folder per model, pixel range, strategy and seed); a run that is
already complete there is reused and one that stopped early is resumed, so an interrupted
study continues where it stopped when the same command is given again. Every run uses
`TrainConfig`'s defaults but for the group's model, pixel range and epochs and the flags below.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from jaxgan.training.cli import DefaultsHelpFormatter, fail
from jaxgan.training.data import DATA_DIR_ENV

PROG = "python -m experiments.strategy_study"
# The notes' MLP with every strategy at the default command's settings; two_pass again with
# PyTorch-GAN's [-1, 1] and tanh, to tell the pixel range's effect from the strategy's; and the
# DCGAN's documented recipe with the notes' own two_pass.
DEFAULT_GROUPS = [
    "mlp:unit:30:all",
    "mlp:symmetric:30:two_pass",
    "dcgan:symmetric:20:two_pass",
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument(
        "--group",
        action="append",
        dest="groups",
        metavar="MODEL:PIXEL_RANGE:EPOCHS:STRATEGIES",
        help="runs to train: model (mlp, dcgan), pixel range (unit, symmetric), epochs, and "
        "comma-separated strategies or 'all'; repeat for more groups (default: "
        + " ".join(DEFAULT_GROUPS) + ")",
    )  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed")
    p.add_argument("--batch-size", type=int, default=64, help="images per update, every run")
    p.add_argument("--features", type=int, default=64, help="DCGAN base width")
    p.add_argument("--bn-epsilon", type=float, default=1e-5, help="every BatchNorm's epsilon")
    p.add_argument("--num-samples", type=int, default=10_000, help="generated images per score")
    p.add_argument(
        "--train-examples",
        type=int,
        default=None,
        help="train on the first N training images only (quick checks; default: all)",
    )
    p.add_argument(
        "--trend-group",
        action="append",
        dest="trend_groups",
        default=[],
        help="group (e.g. dcgan-symmetric) whose runs also get the previous epoch's "
        "checkpoint scored",
    )
    p.add_argument("--data-dir", help=f"folder of the MNIST IDX files (default: ${DATA_DIR_ENV})")
    p.add_argument(
        "--recipes", type=Path, help="results.json of `python -m experiments.recipes`, reported"
    )
    p.add_argument("--out", type=Path, default=Path("runs/study"), help="folder of the runs")
    p.add_argument(
        "--report", type=Path, default=Path("docs/strategies.md"), help="report to write"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs the study; returns the exit status."""
    args = parser().parse_args(argv)
    data_dir = args.data_dir or os.environ.get(DATA_DIR_ENV)
    if not data_dir:
        return fail(PROG, f"give --data-dir (or set ${DATA_DIR_ENV}): the study reads IDX files")

    from experiments.strategy_study.report import write_report  # jax starts here
    from experiments.strategy_study.study import Group, Study, StudyError, run_study
    from jaxgan.training import ConfigError, DataError, load_idx_split

    try:
        groups = tuple(Group.parse(spec) for spec in args.groups or DEFAULT_GROUPS)
        recipes = json.loads(args.recipes.read_text()) if args.recipes else None
        train_set = load_idx_split(data_dir, "train")
        test_set = load_idx_split(data_dir, "test")
    except (ValueError, DataError, OSError) as e:
        return fail(PROG, str(e))
    study = Study(
        groups=groups,
        seeds=tuple(args.seeds),
        batch_size=args.batch_size,
        features=args.features,
        bn_epsilon=args.bn_epsilon,
        num_samples=args.num_samples,
        out=args.out,
        data_dir=str(data_dir),
        train_examples=args.train_examples,
        trend_groups=tuple(args.trend_groups),
    )
    try:
        results = run_study(study, train_set, test_set)
    except (StudyError, ConfigError) as e:
        return fail(PROG, str(e))
    results["recipes"] = recipes
    command = f"{PROG} " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.report.parent.mkdir(parents=True, exist_ok=True)
    write_report(study, results, command, args.report)
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
