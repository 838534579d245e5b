"""`scripts/gpu_check.sh` (`python -m benchmarks.gpu_check`): a GPU's parity and speed, one command.

On a machine with an NVIDIA GPU, in three stages, each a fresh process:

1. `python -m parity --device cuda` for every strategy and both models in float64, gated by the
   parity tolerances;
2. the same in float32 with TF32 off (reported, not gated: float32 has no tolerances);
3. `python -m benchmarks --device cuda` for both models, `two_pass`, batch 64 and 256: jaxgan
   against the notes' PyTorch and the best PyTorch on the same GPU.

It writes `gpu_check.json` (every stage's report, with the GPU's name) and `gpu_check.md` (the
same as tables) in `--out`, and exits non-zero if float64 parity fails or a stage does not
finish. `--dry-run` runs the same stages on the CPU at tiny sizes (parity for the MLP's `two_pass`,
the DCGAN's benchmark), in about a minute: it checks the code paths (CI runs it), and its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.benchmark import format_report
from jaxgan.training.cli import DefaultsHelpFormatter
from jaxgan.training.data import DATA_DIR_ENV
from parity import DEFAULT_DATA_DIR

FULL = {
    "device": "cuda",
    "parity": ["--strategy", "all", "--model", "all", "--steps", "20"],
    "benchmark": ["--model", "all", "--strategy", "two_pass", "--batch-size", "64,256"],
}
# The same stages at sizes a CPU runs in seconds each, one strategy and one model per stage: what
# a dry run tests is the stages and their reports, not the arithmetic. The rest is checked by
# tests/test_parity.py (every strategy and model) and tests/test_benchmark.py (the MLP's row;
# the dry run's benchmark is the DCGAN's, so that both models' benchmarks run in CI).
DRY_RUN = {
    "device": "cpu",
    "parity": ["--strategy", "two_pass", "--model", "mlp", "--steps", "2", "--batch-size", "8",
               "--features", "8"],
    "benchmark": ["--model", "dcgan", "--strategy", "two_pass", "--batch-size", "8", "--chunk", "2",
                  "--repeats", "1", "--torch-warmup", "1", "--train-examples", "64",
                  "--matmul-size", "128", "--matmul-repeats", "2"],
}  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/gpu_check.sh",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("runs/gpu_check"), help="folder for the JSON "
                   "and the Markdown (default runs/gpu_check)")  # fmt: skip
    p.add_argument("--data-dir", help="MNIST IDX files, for every stage (default "
                   "$JAXGAN_DATA_DIR, else ../shared/data/mnist)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="the same stages on the CPU at tiny "
                   "sizes: tests the command, measures nothing")  # fmt: skip
    p.add_argument("--stage-timeout", type=float, default=400.0,
                   help="seconds a stage may run before it is stopped and reported")  # fmt: skip
    return p.parse_args(argv)


def run_stage(name: str, command: list[str], timeout: float) -> dict[str, Any]:
    """Runs one stage in a fresh process; its status, its time and the end of its output."""
    print(f"gpu_check: {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        status, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        status = "timeout"
        output = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(
            errors="replace"
        )
    seconds = time.perf_counter() - start
    print(f"gpu_check: {name}: status {status}, {seconds:.0f} s", file=sys.stderr, flush=True)
    return {"command": command[1:], "status": status, "seconds": seconds,
            "output_tail": output[-4000:]}  # fmt: skip


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def parity_table(reports: dict[str, dict[str, Any] | None]) -> str:
    """One row per (dtype, model, strategy): the largest difference of each quantity."""
    header = "| dtype | model | strategy | " if reports else ""
    rows, quantities = [], None
    for dtype, report in reports.items():
        if report is None:
            rows.append(f"| {dtype} | - | - | (no report) |")
            continue
        worst: dict[tuple[str, str], dict[str, float]] = {}
        for row in report["rows"]:
            diffs = {k: v for k, v in row.items() if isinstance(v, float)}
            quantities = quantities or list(diffs)
            key = (row["model"], row["strategy"])
            worst[key] = {k: max(v, worst.get(key, {}).get(k, 0.0)) for k, v in diffs.items()}
        for (model, strategy), diffs in worst.items():
            rows.append(f"| {dtype} | {model} | `{strategy}` | "
                        + " | ".join(f"{diffs[q]:.1e}" for q in quantities) + " |")  # fmt: skip
    quantities = quantities or []
    header += " | ".join(quantities) + " |"
    rule = "|" + "---|" * (3 + len(quantities))
    return "\n".join([header, rule, *rows])


def markdown(check: dict[str, Any]) -> str:
    """The check as Markdown: the GPU, the stages, parity's largest differences, the speed."""
    kind = "DRY RUN on the CPU: the figures mean nothing" if check["dry_run"] else "full run"
    out = [f"# GPU check: {check['device']}", "", f"{check['date']}; {kind}", "",
           "| stage | status | seconds |", "|---|---|---|"]  # fmt: skip
    for name, stage in check["stages"].items():
        out.append(f"| {name} | {stage['status']} | {stage['seconds']:.0f} |")
    parity = {dtype: check["parity"][dtype] for dtype in ("float64", "float32")}
    verdict = parity["float64"] and ("PASS" if parity["float64"]["passed"] else "FAIL")
    out += ["", f"## Parity (largest difference over all steps; float64 gated: {verdict})", "",
            parity_table(parity)]  # fmt: skip
    if check["benchmark"]:
        out += ["", "## Speed", "", format_report(check["benchmark"])]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = DRY_RUN if args.dry_run else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    reports = ("parity-float64.json", "parity-float32.json", "benchmark.json")
    for name in reports:  # a stage that fails now must not be reported with an earlier figure
        (args.out / name).unlink(missing_ok=True)
    data_dir = args.data_dir or os.environ.get(DATA_DIR_ENV) or str(DEFAULT_DATA_DIR)
    data = ["--data-dir", data_dir]
    device = ["--device", plan["device"]]
    python = sys.executable
    stages = {
        "parity float64": [python, "-m", "parity", *plan["parity"], *device, *data,
                           "--dtype", "float64", "--json", str(args.out / "parity-float64.json")],
        "parity float32": [python, "-m", "parity", *plan["parity"], *device, *data,
                           "--dtype", "float32", "--json", str(args.out / "parity-float32.json")],
        "benchmark": [python, "-m", "benchmarks", *plan["benchmark"], *device, *data,
                      "--json", str(args.out / "benchmark.json")],
    }  # fmt: skip
    results = {name: run_stage(name, cmd, args.stage_timeout) for name, cmd in stages.items()}
    parity = {
        "float64": _load(args.out / "parity-float64.json"),
        "float32": _load(args.out / "parity-float32.json"),
    }
    benchmark = _load(args.out / "benchmark.json")
    named = parity["float64"] or parity["float32"]
    check = {
        "device": named["device"] if named else "unknown (no stage reported)",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "dry_run": args.dry_run,
        "stages": results,
        "parity": parity,
        "benchmark": benchmark,
    }
    (args.out / "gpu_check.json").write_text(json.dumps(check, indent=1) + "\n")
    text = markdown(check)
    (args.out / "gpu_check.md").write_text(text)
    print(text)
    finished = all(s["status"] == 0 for s in results.values())
    return 0 if finished and parity["float64"] and parity["float64"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
