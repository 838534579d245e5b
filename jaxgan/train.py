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
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from jaxgan.checkpoint import Checkpointer, saved_steps
from jaxgan.config import ConfigError, TrainConfig
from jaxgan.data import NUM_CLASSES, Dataset, load_dataset
from jaxgan.distributed import DataParallel, to_host
from jaxgan.sampling import generate
from jaxgan.logs import MetricsLog, plot_losses, save_grid
from jaxgan.models import OUTPUTS, make_models, to_unit_range
from jaxgan.state import GANState, adam, create_state
from jaxgan.strategies import Batch, StepFn, make_train_step

KEY_NAMES = ("init", "data", "noise", "sample")
# Scores a set of generated images in [0, 1], `float32[N, 28, 28, 1]`, as named scalars.
SampleScorer = Callable[[np.ndarray], dict[str, float]]
_SHORT = {"classifier_score": "score", "classes_covered": "classes"}  # progress-bar names


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
        G, D = make_models(
            config.model,
            latent_dim=config.latent_dim,
            output=OUTPUTS[config.pixel_range],
            bn_epsilon=config.bn_epsilon,
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
      step: which checkpoint (see `Checkpointer.all_steps`); `None` for the newest that reads
        back whole (a damaged newer one is set aside with a warning).

    Returns:
      `(config, run, state)`; `run.generate(state, noise)` samples the generator.

    Raises:
      FileNotFoundError: the folder holds no run, or no checkpoint at `step`.
      ConfigError: its `config.json` is not a valid config (the message names the file).
    """
    config_path = Path(workdir) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{workdir} holds no training run (no config.json)")
    config = TrainConfig.load(config_path)
    run = Run.build(config)
    keys = run_keys(config.seed)
    like = run.init_state(keys["init"])
    checkpoints = Checkpointer(workdir)
    try:
        saved = checkpoints.all_steps()
        if step is None:
            state, _, _ = checkpoints.restore_newest_good(like, keys)
        elif step in saved:
            state, _, _ = checkpoints.restore(like, keys, step)
        else:
            raise FileNotFoundError(
                f"{checkpoints.directory} holds no checkpoint at step {step} (saved: {saved})"
            )
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
    sample_scorer: SampleScorer | None = None,
) -> GANState:
    """Trains a GAN as `config` says, writing logs, samples and checkpoints to `workdir`.

    Nothing is written to `workdir` until the data has loaded and every setting has been
    checked, so a run that fails to start leaves the folder as it was. A folder that holds a
    `config.json` but no checkpoint (a run that stopped before its first one) counts as empty.

    Args:
      config: the run's settings; validated before anything is computed.
      workdir: output folder: `config.json`, `metrics.jsonl`, `tensorboard/`, `samples/`,
        `checkpoints/`, and `losses.png` at the end.
      resume: continue from the newest checkpoint in `workdir`; `config` may differ from the
        saved one only in the settings marked resumable (`epochs`, `log_every`, `data_dir`,
        `devices`, `score_samples`), and in `devices` only with `bn_stats="global"`. Without
        it, a workdir that holds a run is an error.
      dataset: the training set; `None` loads it as `config.dataset`/`config.data_dir` say.
      progress: show a progress bar.
      sample_scorer: scores `config.score_samples` images drawn after every epoch (for example
        the classifier score); its values go to `metrics.jsonl`, TensorBoard and the progress
        bar. `None`: no scoring.

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
    saved = _check_workdir(config, workdir, resume)
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
    try:
        if saved:
            try:
                state, keys, record = checkpoints.restore_newest_good(state, keys, set_aside=True)
            except FileNotFoundError as e:
                raise ConfigError(f"cannot resume the run in {workdir}: {e}") from e
            _check_devices(config, record, dp.size, workdir)
        _write_config(config, workdir, dp.is_main)
        loop = _Loop(run, dp, keys, dataset, checkpoints, workdir, int(state.step), progress,
                     sample_scorer)  # fmt: skip
        try:
            with _StopOnInterrupt() as interrupt:
                state = loop.train_epochs(state, interrupt)
        finally:
            loop.close()
    finally:
        checkpoints.close()
    if dp.is_main:
        title = f"{config.model} / {config.strategy}"
        plot_losses(workdir / "metrics.jsonl", workdir / "losses.png", title)
    return state


def _check_workdir(config: TrainConfig, workdir: Path, resume: bool) -> bool:
    """Checks that `workdir` may hold this run, writing nothing; returns whether to resume."""
    config_path = workdir / "config.json"
    has_run = config_path.exists() and bool(saved_steps(workdir))
    if has_run and not resume:
        raise ConfigError(
            f"{workdir} already holds a run; pass --resume to continue it or choose another "
            f"--workdir"
        )
    if resume and not has_run:
        raise ConfigError(f"--resume given but {workdir} holds no run to resume (no checkpoint)")
    if has_run:
        config.check_resumable_from(TrainConfig.load(config_path), workdir)
    elif config_path.exists():
        warnings.warn(
            f"{workdir} holds a config.json but no checkpoint (a run that stopped before its "
            f"first one); starting a new run there",
            stacklevel=3,
        )
    return has_run


def _check_devices(config: TrainConfig, record: dict, num_devices: int, workdir: Path) -> None:
    """Per-device BatchNorm statistics depend on the device count: it may not change."""
    saved = record.get("devices", num_devices)
    if config.bn_stats == "per_device" and saved != num_devices:
        raise ConfigError(
            f"cannot resume the run in {workdir} on {num_devices} devices: it was trained on "
            f"{saved} with bn_stats='per_device', where the device count decides the BatchNorm "
            f"statistics; resume it on {saved} devices"
        )


def _write_config(config: TrainConfig, workdir: Path, is_main: bool) -> None:
    if jax.process_count() > 1:  # every process has checked before the main one writes
        multihost_utils.sync_global_devices("jaxgan: workdir checked")
    if is_main:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json())


class _Loop:
    """One run's epochs: dispatches, logging, sample grids, scores and checkpoints."""

    def __init__(self, run, dp, keys, dataset, checkpoints, workdir, start_step, progress,
                 sample_scorer):  # fmt: skip
        config = run.config
        self.run, self.dp, self.config, self.keys = run, dp, config, keys
        self.checkpoints, self.workdir = checkpoints, workdir
        self.steps_per_epoch = config.steps_per_epoch(len(dataset))
        self.num_examples = len(dataset)
        self.data = dp.replicate((dataset.images, dataset.labels))
        self.run_chunk = make_chunk_runner(run.step_fn, config, dp)
        self.order = jax.jit(epoch_order, static_argnums=2, out_shardings=dp.replicated)
        self.sample_noise = dp.replicate(grid_noise(config, keys["sample"]))
        self.scorer = sample_scorer if config.score_samples and dp.is_main else None
        if self.scorer:
            self.score_noise = to_host(score_noise(config, keys["sample"]))
            self.generate = jax.jit(run.generate)  # on the host's default device
        self.scores: dict[str, float] = {}
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
        self._show(epoch=epoch + 1, g_loss=means["g_loss"], d_loss=means["d_loss"],
                   rate=f"{rate:.0f}")  # fmt: skip
        return state

    def _show(self, epoch, g_loss, d_loss, rate):
        postfix = {"epoch": epoch, "g_loss": g_loss, "d_loss": d_loss, "steps/s": rate}
        scores = {_SHORT.get(k, k): f"{v:.3g}" for k, v in self.scores.items()}
        self.bar.set_postfix({**postfix, **scores})

    def _end_epoch(self, state, epoch):
        if self.dp.is_main:
            samples = to_host(self.run.generate(state, self.sample_noise))
            path = self.workdir / "samples" / f"epoch_{epoch:04d}.png"
            rows = NUM_CLASSES if self.config.conditional else None
            save_grid(samples, path, self.config.pixel_range, rows=rows)
        if self.scorer:
            self._score(state, epoch)
        self._save(state, epoch, 0)

    def _score(self, state, epoch):
        started = time.perf_counter()
        images = self.generate(to_host(state), self.score_noise)
        images = np.clip(np.asarray(to_unit_range(images, self.config.pixel_range)), 0, 1)
        self.scores = self.scorer(images)
        seconds = time.perf_counter() - started
        scalars = {f"sample_{name}": value for name, value in self.scores.items()}
        step = epoch * self.steps_per_epoch
        self.log.write(step, scalars, epoch=epoch, score_seconds=seconds)

    def _save(self, state, epoch, position):
        record = {"epoch": epoch, "position": position, "devices": self.dp.size}
        self.checkpoints.save(state, self.keys, record)

    def close(self):
        self.bar.close()
        if self.log:
            self.log.close()


def score_noise(config: TrainConfig, sample_key: jax.Array) -> Batch:
    """The fixed noise of the samples scored after every epoch; conditional: balanced labels."""
    key = jax.random.fold_in(sample_key, 1)  # apart from the grid's noise
    z = jax.random.normal(key, (config.score_samples, config.latent_dim))
    if not config.conditional:
        return z
    return z, jnp.arange(config.score_samples) % NUM_CLASSES


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
