"""The one typed object that describes a training run, with its validation."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Literal

from jaxgan.losses import LOSSES
from jaxgan.models import MODELS
from jaxgan.strategies import STRATEGIES

NUM_CLASSES = 10  # MNIST's digits; conditional models are built for this many classes
# Fewer updates per epoch than this earns a warning: the notes' batch=10000 slip made 6.
FEW_UPDATES_PER_EPOCH = 100
# Settings that may differ when a run is resumed: it can be extended or logged differently.
# (With bn_stats="per_device" the device count is part of the model; resume on as many.)
RESUMABLE_CHANGES = ("epochs", "log_every", "data_dir", "devices")


class ConfigError(ValueError):
    """A setting makes no sense; the message names it and what it may be."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run computes.

    The run command for the notes' setting is `python scripts/train.py --strategy two_pass`.
    """

    strategy: str = "two_pass"  # which gradients each network receives (jaxgan.STRATEGIES)
    model: str = "mlp"  # "mlp" (the notes' network) or "dcgan"
    loss: str = "bce"  # "bce" (sigmoid + PyTorch's BCELoss) or "bce_logits" (stable)
    dataset: str = "mnist"  # TFDS name, used when no data_dir is given
    data_dir: str | None = None  # folder of IDX files; None: $JAXGAN_DATA_DIR, then TFDS
    train_examples: int | None = None  # train on the first N examples only (None: all)
    pixel_range: Literal["unit", "symmetric"] = "unit"  # [0, 1] + sigmoid G, or [-1, 1] + tanh
    epochs: int = 20  # passes over the training set
    batch_size: int = 64  # images per update; the last partial batch of an epoch is dropped
    g_lr: float = 2e-4  # generator Adam learning rate
    d_lr: float = 2e-4  # discriminator Adam learning rate
    beta1: float = 0.5  # Adam beta1, both networks
    beta2: float = 0.999  # Adam beta2, both networks
    latent_dim: int = 100  # size of the noise vector
    features: int = 64  # DCGAN base width (ignored by the MLP)
    seed: int = 0  # one seed decides initialization, data order and noise
    log_every: int = 100  # steps per device dispatch; the host syncs and logs only here
    conditional: bool = False  # class-conditional G(z, y) and D(x, y); one grid row per class
    devices: int | None = None  # devices the batch is split over; None: all of them
    bn_stats: Literal["global", "per_device"] = "global"  # BatchNorm statistics when sharded
    num_samples: int | None = None  # images per sample grid; None: 8x8, or 10 per class

    def validate(self, num_examples: int | None = None) -> None:
        """Raises `ConfigError` naming the first setting that makes no sense.

        Args:
          num_examples: size of the training set, when known, to check the batch size.
        """
        _choice("strategy", self.strategy, list(STRATEGIES))
        _choice("model", self.model, list(MODELS))
        _choice("loss", self.loss, sorted(LOSSES))
        _choice("pixel_range", self.pixel_range, ["unit", "symmetric"])
        _choice("bn_stats", self.bn_stats, ["global", "per_device"])
        if self.devices is not None and self.devices <= 0:
            raise ConfigError(f"devices must be a positive integer, got {self.devices}")
        for name in ("epochs", "batch_size", "latent_dim", "features", "log_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("g_lr", "d_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.train_examples is not None and self.train_examples <= 0:
            raise ConfigError(f"train_examples must be positive, got {self.train_examples}")
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
        fields = json.loads(text)
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown settings {sorted(unknown)} in a saved config")
        return cls(**fields)

    def check_resumable_from(self, saved: TrainConfig, path: Path) -> None:
        """Fails when resuming would silently change what the run computes."""
        changed = [
            f.name
            for f in dataclasses.fields(self)
            if f.name not in RESUMABLE_CHANGES and getattr(self, f.name) != getattr(saved, f.name)
        ]
        if changed:
            diffs = ", ".join(
                f"{n}: saved {getattr(saved, n)!r}, now {getattr(self, n)!r}" for n in changed
            )
            raise ConfigError(
                f"cannot resume the run in {path} with different settings ({diffs}); use the "
                f"saved settings or another workdir"
            )


def _choice(name: str, value: str, allowed: list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")
