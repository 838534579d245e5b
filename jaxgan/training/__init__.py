"""The training application: configuration, data, the loop, checkpoints, logs, devices.

Built on the core library (`jaxgan`), which never imports it. `python -m jaxgan train` and
`jaxgan-train` run it from the command line, `train` from Python. Names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxgan._lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "jaxgan.training.config",
    "ConfigError": "jaxgan.training.config",
    "Dataset": "jaxgan.training.data",
    "DataError": "jaxgan.training.data",
    "DataUnavailableError": "jaxgan.training.data",
    "load_dataset": "jaxgan.training.data",
    "load_idx_split": "jaxgan.training.data",
    "train": "jaxgan.training.loop",
    "SampleScorer": "jaxgan.training.loop",
    "NonFiniteLossError": "jaxgan.training.loop",
    "Interrupted": "jaxgan.training.loop",
    "Run": "jaxgan.training.run",
    "HotLoop": "jaxgan.training.run",
    "load_run": "jaxgan.training.run",
    "run_keys": "jaxgan.training.run",
    "Checkpointer": "jaxgan.training.checkpoint",
    "saved_steps": "jaxgan.training.checkpoint",
    "image_grid": "jaxgan.training.logs",
    "save_grid": "jaxgan.training.logs",
    "read_metrics": "jaxgan.training.logs",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from jaxgan.training.checkpoint import Checkpointer as Checkpointer
    from jaxgan.training.checkpoint import saved_steps as saved_steps
    from jaxgan.training.config import ConfigError as ConfigError
    from jaxgan.training.config import TrainConfig as TrainConfig
    from jaxgan.training.data import DataError as DataError
    from jaxgan.training.data import Dataset as Dataset
    from jaxgan.training.data import DataUnavailableError as DataUnavailableError
    from jaxgan.training.data import load_dataset as load_dataset
    from jaxgan.training.data import load_idx_split as load_idx_split
    from jaxgan.training.logs import image_grid as image_grid
    from jaxgan.training.logs import read_metrics as read_metrics
    from jaxgan.training.logs import save_grid as save_grid
    from jaxgan.training.loop import Interrupted as Interrupted
    from jaxgan.training.loop import NonFiniteLossError as NonFiniteLossError
    from jaxgan.training.loop import SampleScorer as SampleScorer
    from jaxgan.training.loop import train as train
    from jaxgan.training.run import HotLoop as HotLoop
    from jaxgan.training.run import Run as Run
    from jaxgan.training.run import load_run as load_run
    from jaxgan.training.run import run_keys as run_keys
