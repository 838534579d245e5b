"""`python scripts/train.py ...` is `jaxgan-train ...`: see `jaxgan-train --help`."""

import sys

from jaxgan.__main__ import train

if __name__ == "__main__":
    sys.exit(train())
