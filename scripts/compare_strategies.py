"""Train every strategy on the same seeds and data, score each run, and write the report.

The report in docs/strategies.md was written by this command (its runs took 3.8 h of training
on 2 CPU cores shared with other jobs, two or three runs at a time):

    PYTHONPATH=. python scripts/compare_strategies.py --data-dir ../shared/data/mnist

Runs land in --out (one folder per model, pixel range, strategy and seed); a run that is
already complete there is reused and one that stopped early is resumed, so an interrupted
study continues where it stopped when the same command is given again.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxgan.data import DATA_DIR_ENV, DataError, load_idx_split

# The study behind docs/strategies.md: the notes' MLP with every strategy; shared_sequential
# again with PyTorch-GAN's [-1, 1] and tanh, to tell the pixel range's effect from the
# strategy's; and the DCGAN with the notes' own two_pass for as many epochs as 2 shared CPU
# cores allowed beside them.
DEFAULT_GROUPS = [
    "mlp:unit:10:all",
    "mlp:symmetric:10:shared_sequential",
    "dcgan:unit:5:two_pass",
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="compare_strategies.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
    p.add_argument("--features", type=int, default=32, help="DCGAN base width")
    p.add_argument(
        "--bn-epsilon", type=float, default=1e-5, help="every BatchNorm's epsilon, every run"
    )
    p.add_argument("--num-samples", type=int, default=10_000, help="generated images per score")
    p.add_argument(
        "--train-examples",
        type=int,
        default=None,
        help="train on the first N training images only (quick checks; default: all 60,000)",
    )
    p.add_argument(
        "--trend-group",
        action="append",
        dest="trend_groups",
        help="group (e.g. dcgan-unit) whose runs also get the previous epoch's checkpoint "
        "scored (default: dcgan-unit)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help=f"folder of the MNIST IDX files (default: ${DATA_DIR_ENV})",
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
        return _fail(f"give --data-dir (or set ${DATA_DIR_ENV}): the study reads the IDX files")

    from jaxgan.config import ConfigError
    from jaxgan.report import write_report  # jax starts here
    from jaxgan.study import Group, Study, StudyError, run_study

    try:
        groups = tuple(Group.parse(spec) for spec in args.groups or DEFAULT_GROUPS)
        train_set = load_idx_split(data_dir, "train")
        test = load_idx_split(data_dir, "test")
    except (ValueError, DataError, FileNotFoundError) as e:
        return _fail(str(e))
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
        trend_groups=tuple(args.trend_groups or ["dcgan-unit"]),
    )
    try:
        results = run_study(study, train_set, test.images)
    except (StudyError, ConfigError) as e:
        return _fail(str(e))
    command = "PYTHONPATH=. python scripts/compare_strategies.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    args.report.parent.mkdir(parents=True, exist_ok=True)
    write_report(study, results, command, args.report)
    print(f"wrote {args.report}")
    return 0


def _fail(message: str) -> int:
    print(f"compare_strategies.py: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
