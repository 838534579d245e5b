#!/usr/bin/env bash
# Installs jaxgan with everything its tests need, then runs the linter and the test suite.
# Uses the active virtual environment, or creates .venv beside the checkout.
#
# The tests run in JAXGAN_TEST_WORKERS processes (pytest-xdist; default 2). XLA's persistent
# compilation cache, in a folder that lives as long as this script, lets the workers and the
# training runs they start reuse what another already compiled: every program, not only those
# that took a second to compile (JAX's default), as a new process otherwise recompiles each
# small one (eager operations, random draws). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -d .venv ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
# Bytecode: pip compiles every file it installs unless told not to, most of them TensorFlow and
# PyTorch modules no test imports (70 s of a fresh install's 170 s here). Instead Python compiles
# each module when it is first imported and keeps the result (about 25 s for what the tests
# import), so this script lets it write bytecode.
unset PYTHONDONTWRITEBYTECODE
# An editable install of a pyproject.toml-only package needs pip >= 21.3 (PEP 660); a newer venv
# pip is kept as it is, without asking the index for the newest.
python -m pip install -q "pip>=21.3"
# The CPU build of PyTorch for the parity suite; an unpinned torch would pull a CUDA build.
python -c "import torch" 2>/dev/null || python -m pip install -q --no-compile "torch==2.13.0"
python -m pip install -q --no-compile -e ".[torch,tfds,dev]"

ruff check .
ruff format --check .
cache="$(mktemp -d)"
trap 'rm -rf "$cache"' EXIT
JAX_COMPILATION_CACHE_DIR="$cache" JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
  python -m pytest -q -n "${JAXGAN_TEST_WORKERS:-2}" --dist loadgroup "$@"
