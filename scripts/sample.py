"""Draw a grid of samples from a trained run: `python scripts/sample.py RUN_DIR --out FILE.png`.

python scripts/sample.py runs/latest --digit 7 --count 64 --out sevens.png   # conditional run
python scripts/sample.py runs/latest --out grid.png        # every digit, one row per digit
python scripts/sample.py runs/plain --count 64 --out grid.png                # plain run

Samples the run's newest (or `--step`) checkpoint with its generator in evaluation mode
(`jaxgan.sample`). `--digit` asks a conditional run for one digit, `--count` images of it; a
conditional run without `--digit` draws every digit, one row each, `--count` images in all (a
multiple of 10, default 100). The grid has as many rows as the largest divisor of the count that
is at most its square root (8x8 for 64, 2x5 for 10, one row for a prime count).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXIT_FAILED = 2
ONE_IMAGE_SET = 64  # default count for one digit or a plain run: an 8x8 grid
PER_DIGIT = 10  # default images per row of an every-digit grid


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sample.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="a run's workdir (as scripts/train.py wrote it)")
    p.add_argument("--out", type=Path, required=True, help="the PNG file to write")
    p.add_argument(
        "--digit",
        type=int,
        default=None,
        help="the digit to draw (conditional runs only; default: every digit, a row each)",
    )
    p.add_argument(
        "--count",
        type=int,
        default=None,
        help=f"images in all (default: {ONE_IMAGE_SET}, or {PER_DIGIT} per digit for every digit)",
    )
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    p.add_argument("--seed", type=int, default=0, help="seeds the noise")
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status."""
    args = parser().parse_args(argv)
    if args.count is not None and args.count < 1:
        return _fail(f"--count must be at least 1, got {args.count}")
    if not (args.run_dir / "config.json").is_file():
        return _fail(f"run_dir {args.run_dir} holds no training run (no config.json)")

    import jax  # jax starts here

    import jaxgan
    from jaxgan.config import ConfigError
    from jaxgan.logs import save_grid
    from jaxgan.train import load_run

    try:
        config, run, state = load_run(args.run_dir, args.step)
    except (FileNotFoundError, ConfigError) as e:
        return _fail(f"--step: {e}" if args.step is not None else str(e))
    labels, rows = None, None
    if not config.conditional:
        if args.digit is not None:
            return _fail(f"--digit needs a conditional run; {args.run_dir} is unconditional")
        count = args.count or ONE_IMAGE_SET
    elif args.digit is not None:
        if not 0 <= args.digit < config.num_classes:
            return _fail(f"--digit must be in 0..{config.num_classes - 1}, got {args.digit}")
        count = args.count or ONE_IMAGE_SET
        labels = [args.digit] * count
    else:
        count = args.count or PER_DIGIT * config.num_classes
        if count % config.num_classes:
            return _fail(
                f"--count must be a multiple of {config.num_classes} for a grid of every digit "
                f"(one row each), got {count}; or pass --digit"
            )
        rows = config.num_classes
        labels = [d for d in range(rows) for _ in range(count // rows)]
    key = jax.random.key(args.seed)
    images = jaxgan.sample(run.generator, state, key, labels=labels, num=count)
    save_grid(images, args.out, config.pixel_range, rows=rows or grid_rows(count))
    print(f"wrote {args.out}: {count} samples of {args.run_dir} at step {int(state.step)}")
    return 0


def grid_rows(count: int) -> int:
    """The largest divisor of `count` that is at most its square root: the squarest full grid."""
    return next(r for r in range(math.isqrt(count), 0, -1) if count % r == 0)


def _fail(message: str) -> int:
    print(f"sample.py: {message}", file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
