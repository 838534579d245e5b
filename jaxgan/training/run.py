"""A run's static parts and its hot path, shared by the training loop and the benchmark.

`Run` is what a `TrainConfig` builds: the networks, the optimizers and the strategy's step.
`HotLoop` is the part of training that runs on the device: the training set lives there as
`uint8`, each epoch's order is a permutation drawn there from `(data key, epoch)`, and each
step's noise from `(noise key, step)`; a dispatch runs many steps in one loop on the device
(`lax.fori_loop`) with the state donated. Because order and noise are functions of the keys
and the step, a run resumed from a checkpoint computes exactly what the uninterrupted run
computes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxgan.models import OUTPUTS, make_models
from jaxgan.state import GANState, adam, create_state
from jaxgan.strategies import Batch, Metrics, StepFn, make_train_step
from jaxgan.training.checkpoint import Checkpointer
from jaxgan.training.config import TrainConfig
from jaxgan.training.data import NUM_CLASSES, Dataset
from jaxgan.training.distributed import DataParallel

KEY_NAMES = ("init", "data", "noise", "sample")


@dataclasses.dataclass(frozen=True)
class Run:
    """The static parts of a run that a config builds: networks, optimizers, the step."""

    config: TrainConfig
    generator: nn.Module
    discriminator: nn.Module
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
            extra_layers=config.extra_layers,
            num_classes=config.num_classes,
            bn_groups=num_devices if config.bn_stats == "per_device" else 1,
            dtype=None if config.dtype == "float32" else config.dtype,  # float32: the params'
        )
        g_tx, d_tx = cls.optimizers(config)
        step_fn = make_train_step(config.strategy, G, D, g_tx, d_tx, loss=config.loss)
        return cls(config, G, D, step_fn)

    @staticmethod
    def optimizers(config: TrainConfig) -> tuple[optax.GradientTransformation, ...]:
        """The generator's and the discriminator's Adam."""
        betas = (config.beta1, config.beta2)
        return adam(config.g_lr, *betas), adam(config.d_lr, *betas)

    def init_state(self, key: jax.Array) -> GANState:
        """The state at step 0, initialized from `key`."""
        return create_state(key, self.generator, self.discriminator, *self.optimizers(self.config))


def load_run(workdir: str | Path, step: int | None = None) -> tuple[TrainConfig, Run, GANState]:
    """Restores a trained run from its workdir, for sampling or evaluation.

    Args:
      workdir: a folder `train` wrote: its `config.json` rebuilds the networks and the
        checkpoint fills in the state.
      step: which checkpoint (see `Checkpointer.all_steps`); `None` for the newest that reads
        back whole (a damaged newer one is set aside with a warning).

    Returns:
      `(config, run, state)`; `jaxgan.sample(run.generator, state, key, ...)` samples it.

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


def chunk_compiler_options(platform: str) -> dict[str, bool]:
    """XLA options for the chunk of training steps on `platform` (a JAX device's `.platform`).

    On the CPU: copy insertion with region analysis. The chunk is a `while` loop whose carry
    is the state, updated in place; XLA's default analysis cannot prove that every read of a
    parameter (an input gradient's matmul, Adam's moment recomputed inside the parameter's
    update) precedes the write of its new value, so it copies each parameter matrix and one
    moment per step: 15 to 16 MB a step for the MLP, 11% of its thread time at batch 64.
    Region analysis orders those reads first and removes every one of these copies (checked by
    `tests/test_train.py`). The update is the same, bit for bit; what changes is the time
    (docs/performance.md).
    """
    return {"xla_cpu_copy_insertion_use_region_analysis": True} if platform == "cpu" else {}


def make_chunk_runner(step_fn: StepFn, config: TrainConfig, dp: DataParallel) -> Callable:
    """`run(state, (images, labels), order, start, noise_key, length) -> (state, metrics)`.

    Runs `length` consecutive steps of an epoch whose example order is `order`, starting at
    batch position `start`; jitted with the state donated. Each step's batch and noise are
    split over `dp`'s devices. `length` (at most `config.log_every`) is a traced trip count,
    so one compiled program serves every chunk, the shorter one at an epoch's end included.
    `metrics` holds each step's metrics stacked in `config.log_every` rows, of which the first
    `length` were written (the rest are zero).
    """
    batch_size, latent_dim, rows = config.batch_size, config.latent_dim, config.log_every

    def to_pixels(images):  # exactly ToTensor's x / 255, optionally mapped to [-1, 1]
        x = images.astype(jnp.float32) / 255
        return x * 2 - 1 if config.pixel_range == "symmetric" else x

    @functools.partial(
        jax.jit,
        donate_argnums=0,
        out_shardings=dp.replicated,
        compiler_options=chunk_compiler_options(dp.mesh.devices.flat[0].platform),
    )
    def run(state, data, order, start, noise_key, length):
        images, labels = data

        def step(state, i):
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

        def body(i, carry):
            state, stacked = carry
            state, metrics = step(state, i)
            return state, jax.tree.map(lambda row, m: row.at[i].set(m), stacked, metrics)

        shapes = jax.eval_shape(step, state, 0)[1]
        stacked = jax.tree.map(lambda m: jnp.zeros((rows, *m.shape), m.dtype), shapes)
        return jax.lax.fori_loop(0, length, body, (state, stacked))

    return run


def grid_noise(config: TrainConfig, key: jax.Array) -> Batch:
    """The fixed noise behind every sample grid of a run; conditional: row r draws class r."""
    z = jax.random.normal(key, (config.grid_size, config.latent_dim))
    if not config.conditional:
        return z
    return z, jnp.repeat(jnp.arange(NUM_CLASSES), config.grid_size // NUM_CLASSES)


def score_noise(config: TrainConfig, sample_key: jax.Array) -> Batch:
    """The fixed noise of the samples scored after every epoch; conditional: balanced labels."""
    key = jax.random.fold_in(sample_key, 1)  # apart from the grid's noise
    z = jax.random.normal(key, (config.score_samples, config.latent_dim))
    if not config.conditional:
        return z
    return z, jnp.arange(config.score_samples) % NUM_CLASSES


def epoch_order(data_key: jax.Array, epoch: int, num_examples: int) -> jax.Array:
    """The permutation of example indices used in `epoch` (drawn on the device under jit)."""
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)


class HotLoop:
    """The device side of training: the dataset, the epoch orders and the chunked step.

    Args:
      run: the run's networks and step.
      dp: the devices each batch is split over.
      keys: the run's PRNG keys (`run_keys`), placed by `dp`.
      dataset: the training set; it is copied to the devices once.
    """

    def __init__(self, run: Run, dp: DataParallel, keys: dict[str, jax.Array], dataset: Dataset):
        self.config, self.keys = run.config, keys
        self.num_examples = len(dataset)
        self.steps_per_epoch = run.config.steps_per_epoch(len(dataset))
        self.data = dp.replicate((dataset.images, dataset.labels))
        self._run_chunk = make_chunk_runner(run.step_fn, run.config, dp)
        self._order = jax.jit(epoch_order, static_argnums=2, out_shardings=dp.replicated)

    def order(self, epoch: int) -> jax.Array:
        """The permutation of example indices used in `epoch`."""
        return self._order(self.keys["data"], epoch, self.num_examples)

    def dispatch(
        self, state: GANState, order: jax.Array, position: int, length: int
    ) -> tuple[GANState, Metrics]:
        """`length` steps from batch `position` of the epoch ordered by `order`; asynchronous,
        with `state` donated. Returns the new state and each step's metrics, stacked in
        `config.log_every` rows, the first `length` of them written."""
        return self._run_chunk(state, self.data, order, position, self.keys["noise"], length)
