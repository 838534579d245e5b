"""`python -m parity`: jaxgan against the notes' PyTorch code, step by step, on real MNIST.

    python -m parity --strategy all --model all --steps 20               # the check, float64
    python -m parity --strategy all --model all --steps 20 --conditional # class-conditional
    python -m parity --strategy all --model all --steps 20 --device cuda
    python -m parity --dtype float32 --steps 20                          # float32 drift, no gate
    python -m parity --dtype float32 --device cuda --tf32                # what TF32 adds

Prints, per strategy, model and step, the largest absolute difference between the two sides
in the losses, parameters, BatchNorm statistics and Adam moments, then the maximum over the
steps beside the tolerances. Exits 1 when a float64 comparison exceeds a tolerance, 2 when the
data cannot be found. Float32 and mixed comparisons have no tolerance (docs/parity.md says why)
and only report.

`--conditional` runs the class-conditional versions of the models instead
(`jaxgan.make_models(..., num_classes=10)`: G on a label embedding concatenated to its noise, a
projection D), on the real images' MNIST labels and a seeded draw of labels for G, the same on
both sides. The tolerances are the plain models'.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jaxgan.choices import BN_EPSILON, MODEL_NAMES, NUM_CLASSES, STRATEGY_NAMES
from jaxgan.training.cli import DefaultsHelpFormatter
from jaxgan.training.data import DATA_DIR_ENV
from parity import DEFAULT_DATA_DIR, DTYPE_NAMES, QUANTITIES

if TYPE_CHECKING:
    from parity import compare

HEADER = f"{'strategy':<18} {'model':<6} {'step':>4}  " + "  ".join(f"{q:>9}" for q in QUANTITIES)


def _choices(value: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    if value == "all":
        return list(allowed)
    chosen = value.split(",")
    unknown = [c for c in chosen if c not in allowed]
    if unknown:
        raise SystemExit(f"{flag}: unknown {unknown}; choose 'all' or from {list(allowed)}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The runner's command line."""
    p = argparse.ArgumentParser(
        prog="python -m parity", description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )  # fmt: skip
    p.add_argument("--strategy", default="all", help="'all' or comma-separated strategy names")
    p.add_argument("--model", default="all", help="'all', 'mlp' or 'dcgan'")
    p.add_argument("--steps", type=int, default=20, help="training steps per comparison")
    p.add_argument("--batch-size", type=int, default=64, help="real images (and noise) per step")
    p.add_argument("--features", type=int, default=64, help="the DCGAN's base width")
    p.add_argument(
        "--extra-layers",
        type=int,
        default=0,
        help="the DCGAN's 3x3 blocks at 7x7 in each network (jaxgan-train --extra-layers)",
    )
    p.add_argument(
        "--conditional",
        action="store_true",
        help="the class-conditional models, on MNIST's labels and a seeded draw for G",
    )
    p.add_argument(
        "--bn-epsilon",
        type=float,
        default=BN_EPSILON,
        help="every BatchNorm's eps, both sides (jaxgan's default, PyTorch's; PyTorch-GAN's "
        "gan.py runs the MLP with 0.8)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights and the noise")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="for both sides")
    p.add_argument(
        "--dtype",
        default="float64",
        choices=DTYPE_NAMES,
        help="what both sides compute in; tolerances apply to float64 only",
    )
    p.add_argument(
        "--torch-dtype",
        choices=DTYPE_NAMES,
        help="the reference's dtype when it differs from --dtype (to see one side's own error)",
    )
    p.add_argument("--tf32", action="store_true", help="leave the TF32 defaults on (GPU)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR),
        help=f"MNIST IDX files (default ${DATA_DIR_ENV}, else ../shared/data/mnist)",
    )
    p.add_argument("--json", type=Path, help="also write the table to this file as JSON")
    args = p.parse_args(argv)
    args.strategies = _choices(args.strategy, STRATEGY_NAMES, "--strategy")
    args.models = _choices(args.model, MODEL_NAMES, "--model")
    args.torch_dtype = args.torch_dtype or args.dtype
    args.num_classes = NUM_CLASSES if args.conditional else None
    if args.steps < 1 or args.batch_size < 2:
        raise SystemExit("--steps must be >= 1 and --batch-size >= 2 (BatchNorm needs two)")
    if args.extra_layers < 0:
        raise SystemExit("--extra-layers must be >= 0")
    return args


def _format_row(strategy: str, model: str, step: str, diffs: dict[str, float]) -> str:
    cells = "  ".join(f"{diffs[q]:9.2e}" for q in QUANTITIES)
    return f"{strategy:<18} {model:<6} {step:>4}  {cells}"


def _print_setup(args: argparse.Namespace, precision: str) -> dict[str, str]:
    """Prints what is compared, and how; returns the notes' method 2 outcome per model."""
    from parity import compare  # PyTorch and JAX start here

    print(f"parity: jaxgan vs the notes' PyTorch code on {args.data_dir.resolve()}")
    print(f"  steps: {args.steps}, batch: {args.batch_size} real images, seed: {args.seed}")
    print(f"  BatchNorm eps: {args.bn_epsilon}")
    if args.conditional:
        print(f"  models: conditional on {args.num_classes} classes: G(z, labels), D(img, labels),")
        print("    on the real images' MNIST labels and G's labels drawn with the seed")
    print(f"  device: {compare.describe_device(args.device)}")
    print(f"  dtype: jaxgan {args.dtype}, PyTorch {args.torch_dtype} (inputs and initial")
    print("    weights are the same float32 values on both sides)")
    print(f"  precision: {precision}")
    if args.steps > compare.TOLERANCE_STEPS:
        print(f"  note: the tolerances are set for up to {compare.TOLERANCE_STEPS} steps, and")
        print("    rounding differences grow with the number of steps")
    method_2 = {}
    if "shared_sequential" in args.strategies:
        for model in args.models:
            method_2[model] = compare.method_2_as_written(
                model, args.features, args.device, args.num_classes
            )
            print(f"  notes' method 2 as written ({model}): {method_2[model]}")
        print("    (parity.reference.shared_sequential computes the update it intends)")
    return method_2


def _run_all(args: argparse.Namespace, real, noise) -> list[compare.Row]:
    from parity import compare  # PyTorch and JAX start here

    print(HEADER)
    rows = []
    for model in args.models:
        by_strategy = compare.run_strategies(
            args.strategies,
            model,
            real,
            noise,
            features=args.features,
            extra_layers=args.extra_layers if model == "dcgan" else 0,
            num_classes=args.num_classes,
            bn_epsilon=args.bn_epsilon,
            seed=args.seed,
            device=args.device,
            jax_dtype=args.dtype,
            torch_dtype=args.torch_dtype,
        )
        for strategy, strategy_rows in by_strategy.items():
            for row in strategy_rows:
                print(_format_row(strategy, model, str(row.step), row.diffs), flush=True)
            rows.extend(strategy_rows)
    return rows


def _print_summary(args: argparse.Namespace, rows: list[compare.Row], gated: bool) -> list[str]:
    """Prints the maximum of each column per comparison; returns the failures, if gated."""
    from parity import compare  # PyTorch and JAX start here

    print("\nlargest difference over all steps" + ("" if gated else ", not checked (not float64)"))
    print(HEADER)
    for (strategy, model), worst in compare.summarize(rows).items():
        print(_format_row(strategy, model, "max", worst))
    if not gated:
        return []
    for model in args.models:
        print(_format_row("tolerance", model, "", compare.TOLERANCES[model]))
    failures = [f"{r.strategy} {r.model} step {r.step}: {f}" for r in rows for f in r.failures()]
    for failure in failures:
        print(f"FAIL {failure}")
    print("FAIL" if failures else "PASS: within tolerance at every step")
    return failures


def main(argv: list[str] | None = None) -> int:
    """Runs the comparisons, prints the table, writes the JSON; returns the exit status."""
    args = parse_args(argv)
    from jaxgan.training.data import load_idx_split  # NumPy only: a missing folder fails fast

    try:
        mnist = load_idx_split(args.data_dir, "train")
    except FileNotFoundError as e:
        print(
            f"parity: real MNIST IDX files not found ({e}); pass --data-dir DIR or set "
            f"{DATA_DIR_ENV}=DIR",
            file=sys.stderr,
        )
        return 2
    from parity import compare  # PyTorch and JAX start here

    labels = mnist.labels if args.conditional else None
    real, noise = compare.mnist_batches(
        mnist.images, args.steps, args.batch_size, args.seed, labels
    )
    gated = args.dtype == args.torch_dtype == "float64"
    with compare.fp32_precision(args.tf32) as precision:
        method_2 = _print_setup(args, precision)
        print()
        rows = _run_all(args, real, noise)
    failures = _print_summary(args, rows, gated)

    if args.json:
        report = {
            "device": compare.describe_device(args.device),
            "precision": precision,
            "dtype": {"jaxgan": args.dtype, "pytorch": args.torch_dtype},
            "steps": args.steps,
            "batch_size": args.batch_size,
            "features": args.features,
            "extra_layers": args.extra_layers,
            "num_classes": args.num_classes,
            "bn_epsilon": args.bn_epsilon,
            "seed": args.seed,
            "method_2_as_written": method_2,
            "tolerances": compare.TOLERANCES if gated else None,
            "rows": [
                {"strategy": r.strategy, "model": r.model, "step": r.step, **r.diffs}
                | {"where": r.where}
                for r in rows
            ],
            "failures": failures,
            "passed": not failures,
        }
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
