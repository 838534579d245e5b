"""The training loop: data on the device, many steps per dispatch, the host in sync only at log
points.

The training set lives on the device as `uint8`; each epoch's order is a permutation drawn on
the device from `(data key, epoch)`, and each step's noise is drawn from `(noise key, step)`.
A dispatch runs `log_every` steps under `lax.scan` with the state donated; only then does the
host fetch the stacked metrics, check them for NaN or infinity, and log their means. Because
order and noise are functions of the keys and the step, a run resumed from a checkpoint
computes exactly what the uninterrupted run computes.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from jaxgan.checkpoint import Checkpointer
from jaxgan.config import NUM_CLASSES, ConfigError, TrainConfig
from jaxgan.data import Dataset, load_dataset
from jaxgan.distributed import DataParallel, to_host
from jaxgan.generate import generate
from jaxgan.logs import MetricsLog, plot_losses, save_grid
from jaxgan.models import make_models
from jaxgan.state import GANState, adam, create_state
from jaxgan.strategies import Batch, StepFn, make_train_step

KEY_NAMES = ("init", "data", "noise", "sample")


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the step and the last good checkpoint."""


class Interrupted(Exception):
    """Training stopped on Ctrl-C after saving a checkpoint."""


@dataclasses.dataclass(frozen=True)
class Run:
    """The static parts of a run that a config builds: networks, optimizers, the step."""

    config: TrainConfig
    generator: object
    discriminator: object
    step_fn: StepFn

    @classmethod
    def build(cls, config: TrainConfig, num_devices: int = 1) -> Run:
        """The run's modules and step; `num_devices` matters only to per-device BatchNorm."""
        output = "sigmoid" if config.pixel_range == "unit" else "tanh"
        G, D = make_models(
            config.model,
            latent_dim=config.latent_dim,
            output=output,
            features=config.features,
            num_classes=config.num_classes,
            bn_groups=num_devices if config.bn_stats == "per_device" else 1,
        )
        g_tx, d_tx = cls.optimizers(config)
        step_fn = make_train_step(config.strategy, G, D, g_tx, d_tx, loss=config.loss)
        return cls(config, G, D, step_fn)

    @staticmethod
    def optimizers(config: TrainConfig):
        betas = (config.beta1, config.beta2)
        return adam(config.g_lr, *betas), adam(config.d_lr, *betas)

    def init_state(self, key: jax.Array) -> GANState:
        return create_state(key, self.generator, self.discriminator, *self.optimizers(self.config))

    def generate(self, state: GANState, noise: Batch) -> jax.Array:
        """Images from `noise` (`z`, or `(z, labels)` if conditional), G in evaluation mode."""
        return generate(self.generator, state, noise)


def load_run(workdir: str | Path, step: int | None = None) -> tuple[TrainConfig, Run, GANState]:
    """Restores a trained run from its workdir, for sampling or evaluation.

    Args:
      workdir: a folder `train` wrote: its `config.json` rebuilds the networks and the
        checkpoint fills in the state.
      step: which checkpoint (see `Checkpointer.latest_step`); `None` for the newest.

    Returns:
      `(config, run, state)`; `run.generate(state, noise)` samples the generator.

    Raises:
      FileNotFoundError: the folder holds no run, or no checkpoint at `step`.
    """
    config_path = Path(workdir) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{workdir} holds no training run (no config.json)")
    config = TrainConfig.from_json(config_path.read_text())
    run = Run.build(config)
    keys = run_keys(config.seed)
    checkpoints = Checkpointer(workdir)
    try:
        saved = checkpoints.all_steps()
        if not saved or (step is not None and step not in saved):
            wanted = "no checkpoint" if step is None else f"no checkpoint at step {step}"
            raise FileNotFoundError(f"{checkpoints.directory} holds {wanted} (saved: {saved})")
        state, _, _ = checkpoints.restore(run.init_state(keys["init"]), keys, step)
    finally:
        checkpoints.close()
    return config, run, state


def run_keys(seed: int) -> dict[str, jax.Array]:
    """The run's independent PRNG streams, all derived from one seed."""
    return dict(zip(KEY_NAMES, jax.random.split(jax.random.key(seed), len(KEY_NAMES)), strict=True))


def make_chunk_runner(step_fn: StepFn, config: TrainConfig, dp: DataParallel) -> Callable:
    """`run(state, (images, labels), order, start, noise_key, length) -> (state, metrics)`.

    Runs `length` (static) consecutive steps of an epoch whose example order is `order`,
    starting at batch position `start`, under `lax.scan`; jitted with the state donated. Each
    step's batch and noise are split over `dp`'s devices.
    """
    batch_size, latent_dim = config.batch_size, config.latent_dim

    def to_pixels(images):  # exactly ToTensor's x / 255, optionally mapped to [-1, 1]
        x = images.astype(jnp.float32) / 255
        return x * 2 - 1 if config.pixel_range == "symmetric" else x

    @functools.partial(
        jax.jit, static_argnames="length", donate_argnums=0, out_shardings=dp.replicated
    )
    def run(state, data, order, start, noise_key, length):
        images, labels = data

        def body(state, i):
            idx = jax.lax.dynamic_slice_in_dim(order, (start + i) * batch_size, batch_size)
            step_key = jax.random.fold_in(noise_key, state.step)
            noise = jax.random.normal(step_key, (batch_size, latent_dim))
            real = to_pixels(images[idx])
            if config.conditional:  # G draws uniformly chosen classes, D sees real labels
                fake_labels = jax.random.randint(
                    jax.random.fold_in(step_key, 1), (batch_size,), 0, NUM_CLASSES
                )
                real, noise = (real, labels[idx]), (noise, fake_labels)
            return step_fn(state, *dp.shard_batch((real, noise)))

        return jax.lax.scan(body, state, jnp.arange(length))

    return run


def grid_noise(config: TrainConfig, key: jax.Array) -> Batch:
    """The fixed noise behind every sample grid of a run; conditional: row r draws class r."""
    z = jax.random.normal(key, (config.grid_size, config.latent_dim))
    if not config.conditional:
        return z
    return z, jnp.repeat(jnp.arange(NUM_CLASSES), config.grid_size // NUM_CLASSES)


def epoch_order(data_key: jax.Array, epoch: int, num_examples: int) -> jax.Array:
    """The permutation of example indices used in `epoch` (drawn on the device under jit)."""
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)


def _first_non_finite(metrics: dict[str, np.ndarray]) -> tuple[int, str] | None:
    bad = ~np.stack([np.isfinite(v) for v in metrics.values()])  # [metric, step]
    if not bad.any():
        return None
    step = int(np.argmax(bad.any(axis=0)))
    return step, list(metrics)[int(np.argmax(bad[:, step]))]


class _StopOnInterrupt:
    """Turns the first Ctrl-C into a flag checked between dispatches; a second one raises.

    A KeyboardInterrupt raised between a dispatch returning and its result being bound would
    lose the new state while the old one was already donated; a flag cannot.
    """

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)


def train(
    config: TrainConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    dataset: Dataset | None = None,
    progress: bool = True,
) -> GANState:
    """Trains a GAN as `config` says, writing logs, samples and checkpoints to `workdir`.

    Args:
      config: the run's settings; validated before anything is computed.
      workdir: output folder: `config.json`, `metrics.jsonl`, `tensorboard/`, `samples/`,
        `checkpoints/`, and `losses.png` at the end.
      resume: continue from the newest checkpoint in `workdir` (its config must match, except
        for `epochs`, `log_every` and `data_dir`); without it a non-empty workdir is an error.
      dataset: the training set; `None` loads it as `config.dataset`/`config.data_dir` say.
      progress: show a progress bar.

    Returns:
      The final state.

    Raises:
      ConfigError: a setting makes no sense, or resuming would change the run.
      NonFiniteLossError: a loss became NaN or infinite (the newest checkpoint stays good).
      Interrupted: Ctrl-C stopped training; a checkpoint of the last completed dispatch was saved.
    """
    config.validate()
    workdir = Path(workdir)
    try:
        dp = DataParallel.create(config.devices)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if config.batch_size % dp.size:
        raise ConfigError(
            f"batch_size {config.batch_size} does not split evenly over {dp.size} devices; "
            f"use a multiple of {dp.size}"
        )
    _prepare_workdir(config, workdir, resume, dp.is_main)
    if dataset is None:
        dataset = load_dataset(config.dataset, "train", config.data_dir)
    if config.train_examples is not None:
        if config.train_examples > len(dataset):
            raise ConfigError(
                f"train_examples {config.train_examples} exceeds the {len(dataset)} examples "
                f"in {dataset.source}"
            )
        dataset = dataset.take(config.train_examples)
    config.validate(len(dataset))
    config.warn_if_few_updates(len(dataset))

    run = Run.build(config, dp.size)
    keys = run_keys(config.seed)
    state, keys = dp.replicate((run.init_state(keys["init"]), keys))
    checkpoints = Checkpointer(workdir)
    if resume and checkpoints.latest_step() is not None:
        state, keys, _ = checkpoints.restore(state, keys)

    loop = _Loop(run, dp, keys, dataset, checkpoints, workdir, int(state.step), progress)
    try:
        with _StopOnInterrupt() as interrupt:
            state = loop.train_epochs(state, interrupt)
    finally:
        loop.close()
    if dp.is_main:
        title = f"{config.model} / {config.strategy}"
        plot_losses(workdir / "metrics.jsonl", workdir / "losses.png", title)
    return state


def _prepare_workdir(config: TrainConfig, workdir: Path, resume: bool, is_main: bool) -> None:
    config_path = workdir / "config.json"
    if config_path.exists():
        if not resume:
            raise ConfigError(
                f"{workdir} already holds a run; pass --resume to continue it or choose "
                f"another --workdir"
            )
        config.check_resumable_from(TrainConfig.from_json(config_path.read_text()), workdir)
    elif resume:
        raise ConfigError(f"--resume given but {workdir} holds no run to resume")
    if jax.process_count() > 1:  # every process checks before the main one writes
        multihost_utils.sync_global_devices("jaxgan: workdir checked")
    if is_main:
        workdir.mkdir(parents=True, exist_ok=True)
        config_path.write_text(config.to_json())


class _Loop:
    """One run's epochs: dispatches, logging, sample grids and checkpoints."""

    def __init__(self, run, dp, keys, dataset, checkpoints, workdir, start_step, progress):
        config = run.config
        self.run, self.dp, self.config, self.keys = run, dp, config, keys
        self.checkpoints, self.workdir = checkpoints, workdir
        self.steps_per_epoch = config.steps_per_epoch(len(dataset))
        self.num_examples = len(dataset)
        self.data = dp.replicate((dataset.images, dataset.labels))
        self.run_chunk = make_chunk_runner(run.step_fn, config, dp)
        self.order = jax.jit(epoch_order, static_argnums=2, out_shardings=dp.replicated)
        self.sample_noise = dp.replicate(grid_noise(config, keys["sample"]))
        # Logs, images and the progress bar come from the main process only.
        self.log = MetricsLog(workdir, start_step=start_step) if dp.is_main else None
        self.bar = tqdm(
            total=config.epochs * self.steps_per_epoch,
            initial=start_step,
            disable=not (progress and dp.is_main),
            unit="step",
            dynamic_ncols=True,
        )

    def train_epochs(self, state: GANState, interrupt: _StopOnInterrupt) -> GANState:
        epoch, position = divmod(int(to_host(state.step)), self.steps_per_epoch)
        while epoch < self.config.epochs:
            order = self.order(self.keys["data"], epoch, self.num_examples)
            while position < self.steps_per_epoch:
                length = min(self.config.log_every, self.steps_per_epoch - position)
                state = self._dispatch(state, order, epoch, position, length)
                position += length
                if interrupt.requested and position < self.steps_per_epoch:
                    self._save(state, epoch, position)
                    step = epoch * self.steps_per_epoch + position
                    raise Interrupted(
                        f"interrupted at step {step} (epoch {epoch + 1}); checkpoint saved in "
                        f"{self.checkpoints.directory}; continue with --resume"
                    )
            epoch, position = epoch + 1, 0
            self._end_epoch(state, epoch)
            if interrupt.requested and epoch < self.config.epochs:
                raise Interrupted(
                    f"interrupted after epoch {epoch}; checkpoint saved in "
                    f"{self.checkpoints.directory}; continue with --resume"
                )
        return state

    def _dispatch(self, state, order, epoch, position, length):
        first_step = epoch * self.steps_per_epoch + position
        started = time.perf_counter()
        state, metrics = self.run_chunk(
            state, self.data, order, position, self.keys["noise"], length
        )
        metrics = to_host(metrics)  # the one host sync per dispatch
        rate = length / (time.perf_counter() - started)
        _check_finite(metrics, first_step, self.checkpoints)
        means = {name: float(np.mean(values)) for name, values in metrics.items()}
        if self.log:
            self.log.write(first_step + length, means, epoch=epoch + 1, steps_per_sec=rate)
        self.bar.update(length)
        postfix = {"epoch": epoch + 1, "g_loss": means["g_loss"], "d_loss": means["d_loss"]}
        self.bar.set_postfix({**postfix, "steps/s": f"{rate:.0f}"})
        return state

    def _end_epoch(self, state, epoch):
        if self.dp.is_main:
            samples = to_host(self.run.generate(state, self.sample_noise))
            path = self.workdir / "samples" / f"epoch_{epoch:04d}.png"
            rows = NUM_CLASSES if self.config.conditional else None
            save_grid(samples, path, self.config.pixel_range, rows=rows)
        self._save(state, epoch, 0)

    def _save(self, state, epoch, position):
        self.checkpoints.save(state, self.keys, {"epoch": epoch, "position": position})

    def close(self):
        self.bar.close()
        if self.log:
            self.log.close()
        self.checkpoints.close()


def _check_finite(metrics: dict[str, np.ndarray], first_step: int, checkpoints) -> None:
    found = _first_non_finite(metrics)
    if found is None:
        return
    index, name = found
    last = checkpoints.latest_step()
    where = f"the last good checkpoint is step {last}" if last else "no checkpoint was saved yet"
    raise NonFiniteLossError(
        f"{name} became {metrics[name][index]} at step {first_step + index + 1}; training "
        f"stopped; {where} ({checkpoints.directory})"
    )
