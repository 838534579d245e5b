"""The training loop: logs, sample grids, scores and checkpoints around `HotLoop`'s dispatches.

The host syncs with the device once per dispatch (`log_every` steps): it fetches the stacked
metrics, checks them for NaN or infinity, and logs their means. After every epoch it draws the
sample grid, scores the epoch's samples when given a scorer, and saves a checkpoint.
"""

from __future__ import annotations

import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from jaxgan.models import to_unit_range
from jaxgan.sampling import generate
from jaxgan.state import GANState
from jaxgan.training.checkpoint import Checkpointer, saved_steps
from jaxgan.training.config import ConfigError, TrainConfig
from jaxgan.training.data import NUM_CLASSES, Dataset, load_dataset, to_float
from jaxgan.training.distributed import DataParallel, to_host
from jaxgan.training.logs import MetricsLog, plot_losses, save_grid
from jaxgan.training.run import HotLoop, Run, grid_noise, run_keys, score_noise

# Scores a set of generated images in [0, 1], `float32[N, 28, 28, 1]`, as named scalars.
SampleScorer = Callable[[np.ndarray], dict[str, float]]
_SHORT = {"classifier_score": "score", "classes_covered": "classes"}  # progress-bar names


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the step and the last good checkpoint."""


class Interrupted(Exception):
    """Training stopped on Ctrl-C after saving a checkpoint."""


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
        self.hot = HotLoop(run, dp, keys, dataset)
        self.steps_per_epoch = self.hot.steps_per_epoch
        self.sample_noise = dp.replicate(grid_noise(config, keys["sample"]))
        # Jitted: eagerly, each of G's operations would be compiled on its own at the first epoch.
        self.generate = jax.jit(lambda state, noise: generate(run.generator, state, noise))
        self.scorer = sample_scorer if config.score_samples and dp.is_main else None
        if self.scorer:  # on the host's default device, from a host copy of the state
            self.score_noise = to_host(score_noise(config, keys["sample"]))
        self.scores: dict[str, float] = {}
        # Logs, images and the progress bar come from the main process only.
        self.log = MetricsLog(workdir, start_step=start_step) if dp.is_main else None
        self.grid_rows = NUM_CLASSES if config.conditional else None
        if dp.is_main:  # the real images beside which to look at the samples
            real = real_grid_images(dataset, config)
            save_grid(real, workdir / "samples" / "real.png", rows=self.grid_rows)
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
            order = self.hot.order(epoch)
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
        state, metrics = self.hot.dispatch(state, order, position, length)
        metrics = to_host(metrics)  # the one host sync per dispatch
        metrics = {name: rows[:length] for name, rows in metrics.items()}  # the steps run
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
            samples = self.generate(state, self.sample_noise)
            samples = to_host(to_unit_range(samples, self.config.pixel_range))
            path = self.workdir / "samples" / f"epoch_{epoch:04d}.png"
            grid = save_grid(samples, path, rows=self.grid_rows)
            self.log.image("samples", grid, epoch * self.steps_per_epoch)
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


def real_grid_images(dataset: Dataset, config: TrainConfig) -> np.ndarray:
    """As many training images as a sample grid holds, in `[0, 1]`; for a conditional run,
    the first of each class in the grid's rows."""
    n = config.grid_size
    if not config.conditional:
        return to_float(dataset.images[:n])
    per_class = n // NUM_CLASSES
    picks = np.concatenate(
        [np.flatnonzero(dataset.labels == c)[:per_class] for c in range(NUM_CLASSES)]
    )
    return to_float(dataset.images[picks if len(picks) == n else np.arange(n)])


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
