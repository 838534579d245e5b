"""jaxgan's side of the benchmark, run in a fresh process by `benchmarks.benchmark`.

`python -m benchmarks.bench_jax SPEC_JSON` prints one JSON object. A fresh process per
measurement keeps its peak memory its own (`ru_maxrss`), and lets the parent choose the number
of simulated CPU devices, which XLA fixes when it starts.

Training is timed through the real loop's hot path (`jaxgan.training.HotLoop`): the dataset on
the device as `uint8`, `chunk` steps per dispatch in one device loop with the state donated,
and a new epoch order drawn when a chunk would run past the end of an epoch.
The first dispatch (tracing, compilation and one chunk) is timed apart from the steady state;
the steady state is `repeats` dispatches with one host sync, after the last, timed `rounds`
times in a row: the fastest window is the measurement (the others are reported with it).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.state import DEFAULT_LEARNING_RATE, GANState
from jaxgan.training import Dataset, HotLoop, Run, TrainConfig, run_keys
from jaxgan.training.distributed import DataParallel


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _device_peak_mb(device: jax.Device) -> float | None:
    stats = device.memory_stats()  # None on the CPU
    return stats["peak_bytes_in_use"] / 2**20 if stats else None


def _setup(spec: dict[str, Any]) -> None:
    if spec["device"] == "cuda" and not spec["tf32"]:
        jax.config.update("jax_default_matmul_precision", "highest")


def step_flops(run: Run) -> float:
    """XLA's count of floating-point operations in one train step at `run.config.batch_size`.

    The step alone (not the chunk): XLA's cost analysis of a `while` loop does not multiply its
    body by the trip count. Elementwise work (BatchNorm, losses, Adam) is included. Counted on
    the step as traced, before XLA's optimizations (the arithmetic the model asks for, which is
    what a percentage of peak counts; the compiled program's count is 1-2% higher), so that
    counting costs no compilation.
    """
    config = run.config
    state = jax.eval_shape(run.init_state, jax.random.key(0))
    real = jax.ShapeDtypeStruct((config.batch_size, *run.generator.image_shape), jnp.float32)
    noise = jax.ShapeDtypeStruct((config.batch_size, config.latent_dim), jnp.float32)
    cost = jax.jit(run.step_fn).lower(state, real, noise).cost_analysis()
    if isinstance(cost, list):  # older jax: one dict per computation
        cost = cost[0]
    return float(cost["flops"])


def training_loop(
    config: TrainConfig, images: np.ndarray
) -> tuple[Run, GANState, Callable[[GANState], tuple[GANState, dict]]]:
    """The training loop's hot path (`jaxgan.training.HotLoop`), set up as `train` sets it up.

    Returns:
      `(run, state, dispatch)`: `dispatch(state)` runs the next `config.log_every` steps in
      one device loop (one dispatch, state donated) and returns `(state, stacked metrics)`, drawing
      a new epoch order when a chunk would run past the end of an epoch.

    Raises:
      ValueError: a chunk is longer than an epoch.
    """
    dataset = Dataset(images, np.zeros(len(images), np.int32), "benchmark")
    dp = DataParallel.create(config.devices)
    run = Run.build(config, dp.size)
    keys = run_keys(config.seed)
    state, keys = dp.replicate((run.init_state(keys["init"]), keys))
    hot = HotLoop(run, dp, keys, dataset)
    if config.log_every > hot.steps_per_epoch:
        raise ValueError(f"chunk {config.log_every} exceeds an epoch ({hot.steps_per_epoch} steps)")
    epoch, position = 0, 0
    order = hot.order(epoch)

    def dispatch(state):
        nonlocal epoch, position, order
        if position + config.log_every > hot.steps_per_epoch:
            epoch, position = epoch + 1, 0
            order = hot.order(epoch)
        out = hot.dispatch(state, order, position, config.log_every)
        position += config.log_every
        return out

    return run, state, dispatch


def train(spec: dict[str, Any]) -> dict[str, Any]:
    """Throughput of `spec["chunk"] * spec["repeats"]` training steps after a warm-up chunk, the
    fastest of `spec["rounds"]` such windows."""
    _setup(spec)
    config = TrainConfig(
        model=spec["model"],
        strategy=spec["strategy"],
        batch_size=spec["batch_size"],
        log_every=spec["chunk"],
        devices=spec["devices"],
        g_lr=DEFAULT_LEARNING_RATE,  # the notes' Adam(2e-4), as both PyTorch sides use
        d_lr=DEFAULT_LEARNING_RATE,
        dtype=spec.get("dtype", "float32"),  # jaxgan's compute dtype; PyTorch stays float32
    )
    run, state, dispatch = training_loop(config, np.load(spec["data"]))
    started = time.perf_counter()
    state, metrics = jax.block_until_ready(dispatch(state))
    compile_s = time.perf_counter() - started
    windows = []
    for _ in range(spec["rounds"]):
        started = time.perf_counter()
        for _ in range(spec["repeats"]):
            state, metrics = dispatch(state)
        jax.block_until_ready((state, metrics))  # the one host sync of a timed window
        windows.append(time.perf_counter() - started)
    seconds = min(windows)
    steps = spec["chunk"] * spec["repeats"]
    devices = sorted(state.step.devices(), key=lambda d: d.id)  # the state is replicated
    return {
        "steps": steps,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "round_steps_per_s": [steps / window for window in windows],
        "compile_s": compile_s,
        "flops_per_step": step_flops(run),
        "final_losses": [float(metrics[k][-1]) for k in ("g_loss", "d_loss")],
        "devices": len(devices),
        "peak_rss_mb": _peak_rss_mb(),
        "peak_device_mb": _device_peak_mb(devices[0]),
    }


def matmul(spec: dict[str, Any]) -> dict[str, Any]:
    """Best of `spec["repeats"]` timed float32 `n x n` matmuls, as GFLOP/s."""
    _setup(spec)
    n = spec["size"]
    a, b = (jax.random.normal(jax.random.key(i), (n, n), jnp.float32) for i in range(2))
    product = jax.jit(jnp.matmul)
    jax.block_until_ready(product(a, b))
    best = float("inf")
    for _ in range(spec["repeats"]):
        started = time.perf_counter()
        jax.block_until_ready(product(a, b))
        best = min(best, time.perf_counter() - started)
    device = jax.devices()[0]
    return {
        "gflops": 2 * n**3 / best / 1e9,
        "device": f"{device.platform}: {device.device_kind}",
        # XLA:CPU sizes its intra-op thread pool to the cores this process may run on.
        "threads": len(os.sched_getaffinity(0)),
        "version": f"jax {jax.__version__}",
    }


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print(json.dumps({"train": train, "matmul": matmul}[spec["task"]](spec)))
