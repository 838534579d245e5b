#!/usr/bin/env bash
# One command for a GPU's figures: parity (float64, and float32 with TF32 off) and the
# benchmark of both models against PyTorch on the same GPU, written to runs/gpu_check/
# (gpu_check.json, gpu_check.md). `--dry-run` runs the same stages on the CPU at tiny sizes.
# Arguments go to `python -m benchmarks.gpu_check` (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # parity/ and benchmarks/ run from a checkout
exec python -m benchmarks.gpu_check "$@"
