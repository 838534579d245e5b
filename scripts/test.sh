#!/usr/bin/env bash
# Installs jaxgan with everything its tests need, then runs the linter and the test suite.
# Uses the active virtual environment, or creates .venv beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -d .venv ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -m pip install -q --upgrade pip
# The CPU build of PyTorch for the parity suite; an unpinned torch would pull a CUDA build.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[torch,tfds,dev]"

ruff check .
ruff format --check .
python -m pytest -q "$@"
