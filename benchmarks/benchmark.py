"""Training throughput: jaxgan, the notes' PyTorch code and the best PyTorch, same work.

For each model, strategy and batch size, three measurements on the same MNIST images, the
same batch size and the same update:

- `jaxgan`: the training loop's hot path (`benchmarks.bench_jax`): `HotLoop`, many steps per
  dispatch in one device loop, the dataset on the device, the state donated.
- `notes`: `parity.reference`, the notes' code, in a per-step Python loop
  (`benchmarks.bench_torch`).
- `best`: `benchmarks.fast`, the same update without wasted gradients, fused Adam, and
  `torch.compile` with `--torch-compile`; `tests/test_fast.py` shows it computes what `notes` does.

Every measurement runs in a fresh Python process, which imports one framework only, so its
peak resident memory (`ru_maxrss`, everything the process touched: interpreter, framework,
dataset, compilation and training) is its own. On a GPU the device's peak allocation is
reported too. One step's FLOPs are XLA's count for jaxgan's step as traced (`cost_analysis`); each
column's GFLOP/s is that count times its steps per second, the rate of useful work, against the
best float32 matmul rate each framework reaches on the same device (the "peak").

`--devices-sweep 1,2,4` also times jaxgan with the same global batch split over 1, 2 and 4
devices (`DataParallel`); on a CPU the devices are simulated, one process each, and share the
same cores, so the sweep shows how the sharded program scales, not what more hardware buys.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from jaxgan.choices import COMPUTE_DTYPES, MODEL_NAMES, STRATEGY_NAMES
from jaxgan.training.cli import DefaultsHelpFormatter
from jaxgan.training.data import DATA_DIR_ENV, DataError, DataUnavailableError, load_dataset

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("jax", "notes", "best")


def _names(value: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    chosen = list(allowed) if value == "all" else value.split(",")
    unknown = [c for c in chosen if c not in allowed]
    if unknown:
        raise SystemExit(f"{flag}: unknown {unknown}; choose 'all' or from {list(allowed)}")
    return chosen


def _positive_ints(value: str, flag: str) -> list[int]:
    parts = value.split(",")
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise SystemExit(f"{flag}: expected comma-separated positive integers, got {value!r}")
    return [int(part) for part in parts]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )  # fmt: skip
    p.add_argument("--model", default="all", help="'all', 'mlp' or 'dcgan'")
    p.add_argument("--strategy", default="all", help="'all' or comma-separated strategy names")
    p.add_argument("--batch-size", default="64,256", help="comma-separated batch sizes")
    p.add_argument("--chunk", type=int, default=50, help="jaxgan steps per dispatch")
    p.add_argument("--repeats", type=int, default=3, help="timed dispatches; PyTorch times as "
                   "many steps (chunk x repeats)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=3, help="times each side's timed steps run, "
                   "back to back in one process; the fastest window counts")  # fmt: skip
    p.add_argument("--torch-warmup", type=int, default=10, help="untimed PyTorch steps first")
    p.add_argument("--train-examples", type=int, default=60000, help="images held in memory")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="for both sides")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on a GPU (both sides)")
    p.add_argument("--dtype", choices=COMPUTE_DTYPES, default="float32",
                   help="jaxgan's compute dtype (training's --dtype); PyTorch: fp32")  # fmt: skip
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="PyTorch's intra-op threads (default: the cores, as XLA uses)")  # fmt: skip
    p.add_argument("--torch-compile", action="store_true", help="torch.compile the best PyTorch")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n peak matmul")
    p.add_argument("--matmul-repeats", type=int, default=5, help="peak = best of this many")
    p.add_argument("--devices-sweep", help="comma-separated device counts for jaxgan's sweep")
    p.add_argument("--sweep-only", action="store_true", help="skip the framework comparison")
    p.add_argument("--data-dir", help=f"MNIST IDX files (default ${DATA_DIR_ENV}, else TFDS)")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    args = p.parse_args(argv)
    args.models = _names(args.model, MODEL_NAMES, "--model")
    args.strategies = _names(args.strategy, tuple(STRATEGY_NAMES), "--strategy")
    args.batch_sizes = _positive_ints(args.batch_size, "--batch-size")
    args.sweep = _positive_ints(args.devices_sweep, "--devices-sweep") if args.devices_sweep else []
    if args.sweep_only and not args.sweep:
        raise SystemExit("--sweep-only needs --devices-sweep")
    for flag in (
        "chunk",
        "repeats",
        "rounds",
        "train_examples",
        "threads",
        "matmul_size",
        "matmul_repeats",
    ):
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be >= 1")
    for batch in args.batch_sizes:
        if batch < 2 or args.chunk * batch > args.train_examples:
            raise SystemExit(f"--batch-size {batch}: needs >= 2 (BatchNorm) and --chunk "
                             f"{args.chunk} batches within --train-examples")  # fmt: skip
        for n in args.sweep:
            if batch % n:
                raise SystemExit(f"--batch-size {batch} does not split over {n} devices")
    return args


def worker(module: str, spec: dict[str, Any], devices: int = 1) -> dict[str, Any]:
    """Runs `python -m module SPEC` in a fresh process and returns the JSON it prints."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if spec["device"] == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        flags = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
        env["XLA_FLAGS"] = flags.strip()
    proc = subprocess.run(
        [sys.executable, "-m", module, json.dumps(spec)],
        env=env, cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"{module} {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_machine(args: argparse.Namespace) -> dict[str, Any]:
    """Each framework's best float32 matmul rate and what it runs on."""
    spec = {"task": "matmul", "size": args.matmul_size, "repeats": args.matmul_repeats,
            "device": args.device, "tf32": args.tf32, "threads": args.threads}  # fmt: skip
    machine = {
        "jax": worker("benchmarks.bench_jax", spec),
        "torch": worker("benchmarks.bench_torch", spec),
    }
    machine["peak_gflops"] = max(m["gflops"] for m in machine.values())
    machine["cores"] = len(os.sched_getaffinity(0))
    machine["load_average"] = os.getloadavg()  # other work on the cores skews every number
    return machine


# What measure_row adds to each framework's measurement (`_rates`).
ROW_RATES = ("images_per_s", "gflops", "percent_of_peak")


def _rates(steps_per_s: float, batch: int, flops_per_step: float, peak: float) -> dict[str, float]:
    """A measured step rate in the other units of `ROW_RATES`."""
    gflops = steps_per_s * flops_per_step / 1e9
    return dict(zip(ROW_RATES, (steps_per_s * batch, gflops, 100 * gflops / peak), strict=True))


def _train_spec(
    args: argparse.Namespace, data: Path, model: str, strategy: str, batch: int
) -> dict[str, Any]:
    """What every training measurement of one model, strategy and batch size is told."""
    return {"task": "train", "model": model, "strategy": strategy, "batch_size": batch,
            "data": str(data), "device": args.device, "tf32": args.tf32,
            "rounds": args.rounds}  # fmt: skip


def _jax_spec(
    args: argparse.Namespace, data: Path, model: str, strategy: str, batch: int
) -> dict[str, Any]:
    """jaxgan's training measurement (`benchmarks.bench_jax`), less its device count."""
    return {**_train_spec(args, data, model, strategy, batch), "chunk": args.chunk,
            "repeats": args.repeats, "dtype": args.dtype}  # fmt: skip


def measure_row(
    args: argparse.Namespace, data: Path, model: str, strategy: str, batch: int, peak: float
) -> dict[str, Any]:
    """jaxgan, notes and best PyTorch on one model, strategy and batch size."""
    row: dict[str, Any] = {"model": model, "strategy": strategy, "batch_size": batch}
    row["jax"] = worker(
        "benchmarks.bench_jax", {**_jax_spec(args, data, model, strategy, batch), "devices": 1}
    )
    torch_spec = {**_train_spec(args, data, model, strategy, batch),
                  "steps": args.chunk * args.repeats, "warmup": args.torch_warmup,
                  "threads": args.threads}  # fmt: skip
    row["notes"] = worker(
        "benchmarks.bench_torch", {**torch_spec, "implementation": "notes", "compile": False}
    )
    row["best"] = worker(
        "benchmarks.bench_torch",
        {**torch_spec, "implementation": "best", "compile": args.torch_compile},
    )
    flops = row["jax"]["flops_per_step"]
    for name in FRAMEWORKS:
        row[name] |= _rates(row[name]["steps_per_s"], batch, flops, peak)
    row["jax_over_notes"] = row["jax"]["steps_per_s"] / row["notes"]["steps_per_s"]
    row["jax_over_best"] = row["jax"]["steps_per_s"] / row["best"]["steps_per_s"]
    return row


def measure_sweep(
    args: argparse.Namespace,
    data: Path,
    model: str,
    strategy: str,
    batch: int,
    one_device: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """jaxgan's throughput with the global batch split over each device count of the sweep.

    `one_device`: the row's jaxgan measurement, which is the sweep's 1-device point (the same
    worker and settings), so it is not measured twice.
    """
    spec = _jax_spec(args, data, model, strategy, batch)
    points = []
    for n in args.sweep:
        if n == 1 and one_device is not None:  # without what measure_row added to it
            result = {k: v for k, v in one_device.items() if k not in ROW_RATES}
        else:
            result = worker("benchmarks.bench_jax", {**spec, "devices": n}, devices=n)
        points.append({"model": model, "strategy": strategy, "batch_size": batch, **result})
    base = points[0]["steps_per_s"]
    for point in points:
        point["speedup"] = point["steps_per_s"] / base
    return points


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _mb(result: dict[str, Any]) -> str:
    device = result["peak_device_mb"]
    return f"{result['peak_rss_mb']:.0f}" + (f" ({device:.0f})" if device is not None else "")


def format_report(report: dict[str, Any]) -> str:
    """The report as Markdown: the machine, then throughput and cost tables, then the sweep."""
    machine, settings = report["machine"], report["settings"]
    out = [
        f"device: {machine['jax']['device']} ({machine['cores']} cores); JAX threads "
        f"{machine['jax']['threads']}, PyTorch threads {machine['torch']['threads']}; "
        f"{machine['jax']['version']}, {machine['torch']['version']}",
        f"matmul peak ({settings['matmul_size']}^2 float32): JAX {machine['jax']['gflops']:.1f}, "
        f"PyTorch {machine['torch']['gflops']:.1f} GFLOP/s; timed: the fastest of "
        f"{settings['rounds']} windows of jaxgan {settings['repeats']} dispatches of "
        f"{settings['chunk']} steps, PyTorch {settings['torch_steps']} steps after "
        f"{settings['torch_warmup']}; best PyTorch torch.compile: {settings['torch_compile']}; "
        f"jaxgan computes in {settings.get('dtype', 'float32')}",
    ]
    load = machine["load_average"][0]
    if load > machine["cores"] / 2:
        out.append(
            f"WARNING: load average {load:.1f} on {machine['cores']} cores: other work competes "
            "for the cores, which slows PyTorch's OpenMP threads most; measure on a quiet machine"
        )
    out.append("")
    if report["rows"]:
        out.append(_table(
            ["model", "strategy", "batch", "jaxgan steps/s", "notes steps/s", "best steps/s",
             "jax/notes", "jax/best", "jaxgan img/s"],
            [[r["model"], r["strategy"], str(r["batch_size"]),
              *(f"{r[f]['steps_per_s']:.1f}" for f in FRAMEWORKS),
              f"{r['jax_over_notes']:.2f}", f"{r['jax_over_best']:.2f}",
              f"{r['jax']['images_per_s']:.0f}"] for r in report["rows"]],
        ))  # fmt: skip
        out += ["", "GFLOP/s (% of matmul peak); compile: first dispatch / warm-up steps, "
                "seconds; peak MB: resident (device)", ""]  # fmt: skip
        out.append(_table(
            ["model", "strategy", "batch", "GFLOP/step", "jaxgan", "notes", "best",
             "compile jax / best", "peak MB jax / notes / best"],
            [[r["model"], r["strategy"], str(r["batch_size"]),
              f"{r['jax']['flops_per_step'] / 1e9:.2f}",
              *(f"{r[f]['gflops']:.1f} ({r[f]['percent_of_peak']:.0f}%)" for f in FRAMEWORKS),
              f"{r['jax']['compile_s']:.1f} / {r['best']['compile_s']:.1f}",
              " / ".join(_mb(r[f]) for f in FRAMEWORKS)] for r in report["rows"]],
        ))  # fmt: skip
    if report["sweep"]:
        out += ["", "jaxgan against device count, same global batch (simulated CPU devices "
                "share the cores: scaling behaviour, not speed)", ""]  # fmt: skip
        out.append(_table(
            ["model", "strategy", "batch", "devices", "steps/s", "speedup", "compile s"],
            [[p["model"], p["strategy"], str(p["batch_size"]), str(p["devices"]),
              f"{p['steps_per_s']:.1f}", f"{p['speedup']:.2f}", f"{p['compile_s']:.1f}"]
             for p in report["sweep"]],
        ))  # fmt: skip
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark, prints its tables and optionally writes JSON; returns the exit code."""
    args = parse_args(argv)
    try:
        images = load_dataset("mnist", "train", args.data_dir).images[: args.train_examples]
    except (DataUnavailableError, DataError, FileNotFoundError) as e:
        print(f"benchmark: no MNIST to train on: {e}", file=sys.stderr)
        return 2
    settings = {
        k: getattr(args, k)
        for k in (
            "chunk",
            "repeats",
            "rounds",
            "torch_warmup",
            "device",
            "tf32",
            "dtype",
            "threads",
            "torch_compile",
            "matmul_size",
            "matmul_repeats",
            "sweep",
        )
    }
    settings |= {"torch_steps": args.chunk * args.repeats, "train_examples": len(images),
                 "memory": "peak RSS (ru_maxrss) of a fresh process per measurement"}  # fmt: skip
    report: dict[str, Any] = {"settings": settings, "rows": [], "sweep": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "images.npy"  # every measurement reads exactly these images
        np.save(data, images)
        report["machine"] = measure_machine(args)
        for model in args.models:
            for strategy in args.strategies:
                for batch in args.batch_sizes:
                    row = None
                    if not args.sweep_only:
                        peak = report["machine"]["peak_gflops"]
                        row = measure_row(args, data, model, strategy, batch, peak)
                        report["rows"].append(row)
                    if args.sweep:
                        one_device = row["jax"] if row else None
                        report["sweep"] += measure_sweep(
                            args, data, model, strategy, batch, one_device
                        )
                    print(f"done: {model} {strategy} batch {batch}", file=sys.stderr, flush=True)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0
