"""The one typed object that describes a training run, with its validation.

Every setting is declared once, as a `TrainConfig` field with its default, its allowed values
and a one-line help; the command line (`jaxgan.training.cli`) is generated from these fields.
This module imports no JAX, so the command line parses and checks its flags at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any, Literal

from jaxgan.choices import (
    BN_EPSILON,
    COMPUTE_DTYPES,
    DATASETS,
    LOSS_NAMES,
    MODEL_NAMES,
    NUM_CLASSES,
    PIXEL_RANGES,
    STRATEGY_NAMES,
    PixelRange,
)

# BatchNorm statistics of a batch split over devices: over the global batch, or per device.
BN_STATS = ("global", "per_device")

# Fewer updates per epoch than this earns a warning: the notes' batch=10000 slip made 6.
FEW_UPDATES_PER_EPOCH = 100
# What a saved config that predates a setting was trained with: the MLP's BatchNorm epsilon
# was PyTorch-GAN's 0.8 until it became PyTorch's default.
_LEGACY_DEFAULTS = {"bn_epsilon": lambda fields: 0.8 if fields.get("model") == "mlp" else 1e-5}


class ConfigError(ValueError):
    """A setting makes no sense; the message names it and what it may be."""


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    none: str | None = None,
    resumable: bool = False,
) -> Any:
    """A `TrainConfig` field: its default, a one-line help, its allowed values (if a choice),
    what a `None` default means, and whether a resumed run may change it (it does not change
    what the run computes)."""
    metadata = {"help": help, "choices": choices, "none": none, "resumable": resumable}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run computes.

    The defaults are the notes' MLP, data and loss with the measured recipe (docs/strategies.md,
    "The default recipe"): `python scripts/train.py --strategy two_pass` runs them.
    """

    strategy: str = setting(
        "two_pass", "which gradients G and D receive (README: the five strategies)",
        choices=STRATEGY_NAMES,
    )  # fmt: skip
    model: str = setting(
        "mlp", "the notes' MLP, or a DCGAN (transposed/strided convolutions)", choices=MODEL_NAMES
    )
    loss: str = setting(
        "bce", "bce: sigmoid + PyTorch's BCELoss exactly; bce_logits: the stable form on logits",
        choices=LOSS_NAMES,
    )  # fmt: skip
    dataset: str = setting(
        "mnist", "the dataset: through TFDS, or the one whose IDX files --data-dir holds",
        choices=DATASETS,
    )  # fmt: skip
    data_dir: str | None = setting(
        None, "folder of MNIST-format IDX files", none="$JAXGAN_DATA_DIR, else TFDS",
        resumable=True,
    )  # fmt: skip
    train_examples: int | None = setting(
        None, "train on the first N training examples only", none="all"
    )
    pixel_range: PixelRange = setting(
        "unit", "unit: [0, 1] images and a sigmoid G; symmetric: [-1, 1] and tanh",
        choices=PIXEL_RANGES,
    )  # fmt: skip
    # Epochs and learning rates: the recipe measured over 3 seeds for the notes' MLP, where
    # Adam(2e-4) draws few digits (docs/strategies.md, "The default recipe"); `jaxgan.adam()`
    # keeps the notes' 2e-4 for the library and the parity suite.
    epochs: int = setting(30, "passes over the training set", resumable=True)
    batch_size: int = setting(64, "images per update; an epoch's last partial batch is dropped")
    g_lr: float = setting(1e-4, "the generator's Adam learning rate (the notes: 2e-4)")
    d_lr: float = setting(1e-4, "the discriminator's Adam learning rate (the notes: 2e-4)")
    beta1: float = setting(0.5, "Adam's beta1, both networks")
    beta2: float = setting(0.999, "Adam's beta2, both networks")
    bn_epsilon: float = setting(
        BN_EPSILON, "BatchNorm epsilon (PyTorch's default; PyTorch-GAN's gan.py runs the MLP "
        "with 0.8: its BatchNorm1d(out_feat, 0.8) passes 0.8 as eps, not momentum)",
    )  # fmt: skip
    dtype: str = setting(
        "float32", "what the models' matmuls and convolutions compute in; with bfloat16, "
        "parameters, BatchNorm statistics, losses and Adam stay float32",
        choices=COMPUTE_DTYPES,
    )  # fmt: skip
    latent_dim: int = setting(100, "size of the noise vector")
    features: int = setting(64, "the DCGAN's base width (the MLP ignores it)")
    extra_layers: int = setting(
        0, "3x3 convolution blocks the DCGAN adds at 7x7 to G and to D (0: the PyTorch DCGAN "
        "example's networks; docs/dcgan.md's recipe: 3)",
    )  # fmt: skip
    seed: int = setting(0, "decides initialization, data order and noise")
    log_every: int = setting(
        100, "steps per device dispatch; the host syncs and logs only here", resumable=True
    )
    conditional: bool = setting(
        False, "class-conditional G(z, y) and D(x, y); one sample-grid row per class"
    )
    devices: int | None = setting(
        None, "devices each batch is split over; batch_size is the global batch", none="all",
        resumable=True,
    )  # fmt: skip
    bn_stats: Literal["global", "per_device"] = setting(
        "global", "BatchNorm statistics of a split batch: over the global batch (SyncBatchNorm) "
        "or per device (DDP)",
        choices=BN_STATS,
    )  # fmt: skip
    num_samples: int | None = setting(
        None, "images in each epoch's sample grid", none="8x8, or 10 per class if conditional"
    )
    score_samples: int = setting(
        2000, "samples scored by the dataset's classifier after every epoch (0: off)",
        resumable=True,
    )  # fmt: skip

    def validate(self, num_examples: int | None = None) -> None:
        """Raises `ConfigError` naming the first setting that makes no sense.

        Args:
          num_examples: size of the training set, when known, to check the batch size.
        """
        for field in dataclasses.fields(self):
            choices = field.metadata["choices"]
            if choices is not None and getattr(self, field.name) not in choices:
                raise ConfigError(
                    f"{field.name} must be one of {list(choices)}, got "
                    f"{getattr(self, field.name)!r}"
                )
        if self.devices is not None and self.devices <= 0:
            raise ConfigError(f"devices must be a positive integer, got {self.devices}")
        for name in ("epochs", "batch_size", "latent_dim", "features", "log_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("g_lr", "d_lr", "bn_epsilon"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.extra_layers < 0 or (self.extra_layers and self.model != "dcgan"):
            raise ConfigError(
                f"extra_layers must be 0, or a positive count with --model dcgan, got "
                f"{self.extra_layers} for {self.model!r}"
            )
        if self.train_examples is not None and self.train_examples <= 0:
            raise ConfigError(f"train_examples must be positive, got {self.train_examples}")
        if self.score_samples < 0 or self.score_samples == 1:
            raise ConfigError(
                f"score_samples must be 0 (off) or at least 2, got {self.score_samples}"
            )
        n = self.grid_size
        if self.conditional and (n <= 0 or n % NUM_CLASSES):
            raise ConfigError(
                f"num_samples must be a positive multiple of {NUM_CLASSES} for a conditional "
                f"run (one grid row per class), got {n}"
            )
        if not self.conditional and (n <= 0 or math.isqrt(n) ** 2 != n):
            raise ConfigError(f"num_samples must be a square number, got {n}")
        if num_examples is not None and self.batch_size > num_examples:
            raise ConfigError(
                f"batch_size {self.batch_size} is larger than the training set "
                f"({num_examples} examples): an epoch would make no update"
            )

    @property
    def num_classes(self) -> int | None:
        """Classes the models are conditioned on, or `None` for a plain GAN."""
        return NUM_CLASSES if self.conditional else None

    @property
    def grid_size(self) -> int:
        """Images in each epoch's sample grid."""
        if self.num_samples is not None:
            return self.num_samples
        return NUM_CLASSES * NUM_CLASSES if self.conditional else 64

    def steps_per_epoch(self, num_examples: int) -> int:
        """Updates per epoch: full batches only, as `DataLoader(drop_last=True)`."""
        return num_examples // self.batch_size

    def warn_if_few_updates(self, num_examples: int) -> None:
        """Warns when an epoch makes so few updates that training will crawl."""
        steps = self.steps_per_epoch(num_examples)
        if steps < FEW_UPDATES_PER_EPOCH:
            warnings.warn(
                f"batch_size {self.batch_size} on {num_examples} examples makes only {steps} "
                f"updates per epoch; GANs usually need thousands of updates (the notes' "
                f"batch=10000 slip made 6 per epoch on MNIST)",
                stacklevel=2,
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """The config a `to_json` text describes; settings it predates take the values the run
        was trained with. Raises `ConfigError` for unknown settings (not a type check)."""
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise ConfigError(f"a saved config is a JSON object, got {type(fields).__name__}")
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown settings {sorted(unknown)} in a saved config")
        for name, legacy in _LEGACY_DEFAULTS.items():
            fields.setdefault(name, legacy(fields))
        return cls(**fields)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Reads and validates a run's `config.json`.

        Raises:
          ConfigError: naming the file, when it is not valid JSON, holds unknown settings or a
            setting that makes no sense (an unknown strategy or model, say).
        """
        path = Path(path)
        try:
            config = cls.from_json(path.read_text())
            config.validate()
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON ({e}); it is not a config this "
                              f"program wrote, or it was cut short") from e  # fmt: skip
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{path}: {e}") from e
        return config

    def changed_settings(self, other: TrainConfig) -> list[str]:
        """The settings that differ from `other`'s and that a resumed run may not change."""
        return [
            f.name
            for f in dataclasses.fields(self)
            if not f.metadata["resumable"] and getattr(self, f.name) != getattr(other, f.name)
        ]

    def check_resumable_from(self, saved: TrainConfig, path: Path) -> None:
        """Fails when resuming would silently change what the run computes."""
        changed = self.changed_settings(saved)
        if changed:
            diffs = ", ".join(
                f"{n}: saved {getattr(saved, n)!r}, now {getattr(self, n)!r}" for n in changed
            )
            raise ConfigError(
                f"cannot resume the run in {path} with different settings ({diffs}); use the "
                f"saved settings or another workdir"
            )


def resumable_settings() -> tuple[str, ...]:
    """The settings a resumed run may change (`setting(..., resumable=True)`)."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resumable"])
