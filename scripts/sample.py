"""`python scripts/sample.py ...` is `jaxgan-sample ...`: see `jaxgan-sample --help`."""

import sys

from jaxgan.__main__ import sample

if __name__ == "__main__":
    sys.exit(sample())
