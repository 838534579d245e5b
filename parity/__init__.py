"""The PyTorch parity suite: the notes' code, literally, against jaxgan.

- `parity.reference`: the models and the five strategies in plain PyTorch.
- `parity.convert`: exact weight and optimizer-state conversion, flax <-> PyTorch.
- `parity.compare`: runs both from the same weights on the same inputs and measures the gap.
- `python -m parity`: the runner (see `parity/__main__.py` and `docs/parity.md`).
"""
