"""`python scripts/evaluate.py ...` is `jaxgan-evaluate ...`: see `jaxgan-evaluate --help`."""

import sys

from jaxgan.__main__ import evaluate

if __name__ == "__main__":
    sys.exit(evaluate())
