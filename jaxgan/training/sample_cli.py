"""`jaxgan-sample` and `jaxgan-export`: samples and the generator out of a trained run.

    jaxgan-sample runs/latest --out grid.png            # a grid; conditional: a row per class
    jaxgan-sample runs/latest --digit 7 --count 64 --out sevens.png         # one class
    jaxgan-sample runs/latest --npz samples.npz --count 10000    # for an outside FID tool
    jaxgan-sample runs/latest --png-dir samples/ --count 10000   # one PNG per sample
    jaxgan-export runs/latest generator.msgpack                  # jaxgan.load_generator reads it

Samples come from the run's newest (or `--step`) checkpoint with its generator in evaluation
mode (`jaxgan.sample`). `--npz` and `--png-dir` write `uint8` images in the dataset's layout
(28x28, 0 black to 255 white, as the IDX files), with the class each was drawn for when the
run is conditional (balanced: sample `i` is class `i % 10`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jaxgan.training.cli import DefaultsHelpFormatter, fail, warnings_to_stderr

if TYPE_CHECKING:  # these import JAX, which the commands start only once the request is valid
    from jaxgan.state import GANState
    from jaxgan.training.config import TrainConfig
    from jaxgan.training.run import Run

SAMPLE, EXPORT = "jaxgan-sample", "jaxgan-export"
ONE_IMAGE_SET = 64  # default count for one class or a plain run: an 8x8 grid
PER_CLASS = 10  # default images per row of an every-class grid


def sample_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=SAMPLE,
        description="Draw samples from a trained run: a PNG grid, an .npz array or PNG files.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="a run's workdir (as jaxgan-train wrote it)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, help="write a PNG grid of the samples here")
    out.add_argument("--npz", type=Path, help="write the samples as uint8 `images` (and `labels`)")
    out.add_argument("--png-dir", type=Path, help="write one PNG per sample into this folder")
    p.add_argument(
        "--digit", type=int, default=None,
        help="the class to draw (conditional runs only; default: every class in turn)",
    )  # fmt: skip
    p.add_argument(
        "--count", type=int, default=None,
        help=f"samples in all (default: {ONE_IMAGE_SET}, or {PER_CLASS} per class for a grid "
        "of every class)",
    )  # fmt: skip
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    p.add_argument("--seed", type=int, default=0, help="seeds the noise")
    return p


def sample_main(argv: list[str] | None = None) -> int:
    """Runs `jaxgan-sample`; returns the exit status."""
    args = sample_parser().parse_args(argv)
    if args.count is not None and args.count < 1:
        return fail(SAMPLE, f"--count must be at least 1, got {args.count}")
    loaded = _load_run(SAMPLE, args.run_dir, args.step)
    if isinstance(loaded, int):
        return loaded
    config, run, state = loaded

    import jax
    import numpy as np

    from jaxgan.models import to_unit_range
    from jaxgan.sampling import balanced_labels, sample
    from jaxgan.training.logs import save_grid, save_images

    classes = config.num_classes
    labels, rows = None, None
    if classes is None:
        if args.digit is not None:
            return fail(SAMPLE, f"--digit needs a conditional run; {args.run_dir} is not one")
        count = args.count or ONE_IMAGE_SET
    elif args.digit is not None:
        if not 0 <= args.digit < classes:
            return fail(SAMPLE, f"--digit must be in 0..{classes - 1}, got {args.digit}")
        count = args.count or ONE_IMAGE_SET
        labels = np.full(count, args.digit, np.int32)
    elif args.out is not None:  # a grid of every class, a row each
        count = args.count or PER_CLASS * classes
        if count % classes:
            return fail(SAMPLE, f"--count must be a multiple of {classes} for a grid of every "
                        f"class (one row each), got {count}; or pass --digit")  # fmt: skip
        rows = classes
        labels = np.repeat(np.arange(classes, dtype=np.int32), count // classes)
    else:
        count = args.count or ONE_IMAGE_SET
        labels = balanced_labels(count, classes)
    key = jax.random.key(args.seed)
    images = sample(run.generator, state, key, labels=labels, num=count, batch_size=1000)
    images = np.clip(np.asarray(to_unit_range(images, config.pixel_range)), 0, 1)
    if args.out is not None:
        save_grid(images, args.out, rows=rows or grid_rows(count))
        written = args.out
    elif args.npz is not None:
        pixels = np.round(images[..., 0] * 255).astype(np.uint8)
        arrays = {"images": pixels} if labels is None else {"images": pixels, "labels": labels}
        args.npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.npz, **arrays)
        written = args.npz
    else:
        save_images(images, args.png_dir, labels)
        written = args.png_dir
    print(f"wrote {written}: {count} samples of {args.run_dir} at step {int(state.step)}")
    return 0


def _load_run(
    prog: str, run_dir: Path, step: int | None
) -> tuple[TrainConfig, Run, GANState] | int:
    """`load_run(run_dir, step)` for `prog`: `(config, run, state)`, or, when `run_dir` holds no
    run or not that checkpoint, the exit status after `prog`'s message. A folder without a
    `config.json` is turned away before JAX starts."""
    if not (run_dir / "config.json").is_file():
        return fail(prog, f"run_dir {run_dir} holds no training run (no config.json)")

    from jaxgan.training.config import ConfigError  # jax starts here
    from jaxgan.training.run import load_run

    with warnings_to_stderr(prog):
        try:
            return load_run(run_dir, step)
        except (FileNotFoundError, ConfigError) as e:
            return fail(prog, f"--step: {e}" if step is not None else str(e))


def grid_rows(count: int) -> int:
    """The largest divisor of `count` that is at most its square root: the squarest full grid."""
    return next(r for r in range(math.isqrt(count), 0, -1) if count % r == 0)


def export_main(argv: list[str] | None = None) -> int:
    """Runs `jaxgan-export`; returns the exit status."""
    p = argparse.ArgumentParser(
        prog=EXPORT,
        description="Write a trained run's generator (weights, BatchNorm statistics, settings) "
        "to one file that jaxgan.load_generator reads.",
    )
    p.add_argument("run_dir", type=Path, help="a run's workdir (as jaxgan-train wrote it)")
    p.add_argument("out", type=Path, help="the file to write, e.g. generator.msgpack")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    args = p.parse_args(argv)
    loaded = _load_run(EXPORT, args.run_dir, args.step)
    if isinstance(loaded, int):
        return loaded
    config, run, state = loaded

    from jaxgan.export import save_generator

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_generator(args.out, run.generator, state, pixel_range=config.pixel_range,
                   dataset=config.dataset)  # fmt: skip
    size = args.out.stat().st_size / 2**20
    print(f"wrote {args.out} ({size:.1f} MiB): the generator of {args.run_dir} at step "
          f"{int(state.step)}; jaxgan.load_generator({str(args.out)!r}) reads it")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(sample_main())
