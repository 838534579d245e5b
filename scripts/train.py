"""Train a GAN on MNIST: `python scripts/train.py --strategy two_pass [--data-dir DIR]`.

See `python scripts/train.py --help`; the same command is installed as `jaxgan-train`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxgan.cli import main

if __name__ == "__main__":
    sys.exit(main())
