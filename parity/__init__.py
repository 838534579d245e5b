"""The PyTorch parity suite: the notes' code, literally, against jaxgan.

- `parity.reference`: the models and the five strategies in plain PyTorch.
- `parity.convert`: exact weight and optimizer-state conversion, flax <-> PyTorch.
- `parity.compare`: runs both from the same weights on the same inputs and measures the gap.
- `python -m parity`: the runner (see `parity/__main__.py` and `docs/parity.md`).

Run from a checkout (`python -m parity`); it is not part of the jaxgan wheel. The names below
import neither PyTorch nor JAX, so the runner parses its flags and prints its help at once.
"""

from pathlib import Path

# Real MNIST's IDX files beside the checkout, where `$JAXGAN_DATA_DIR` does not say otherwise.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
# What each row of the table compares, between the two sides.
QUANTITIES = ("loss", "params", "bn_stats", "adam_mu", "adam_nu")
# What both sides may compute in.
DTYPE_NAMES = ("float32", "float64")
