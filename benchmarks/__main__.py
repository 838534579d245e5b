"""`python -m benchmarks ...`: see `benchmarks/benchmark.py` and `--help`."""

import sys

from benchmarks.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
