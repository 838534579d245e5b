"""`python scripts/export.py ...` is `jaxgan-export ...`: see `jaxgan-export --help`."""

import sys

from jaxgan.__main__ import export

if __name__ == "__main__":
    sys.exit(export())
