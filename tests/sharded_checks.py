"""Checks that need several devices, run by tests/test_sharding.py in a fresh process.

XLA must be told how many CPU devices to simulate before JAX starts, so these run as
`XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/sharded_checks.py CHECK`;
each prints one JSON object of measurements for the test to judge.

The comparisons of a sharded step with a single-device one run in float64 (`jax.enable_x64`):
the state is initialized in float32 as in training and cast, exactly, to float64, and so are
the batches. Then the order of the sums across devices changes results by ~1e-16 relative, on
any CPU, and the tests' bounds (tests/test_sharding.py) do not depend on the machine.
"""

import functools
import json
import sys

import jax
import numpy as np
from numerics import as_float64, assert_float64

from jaxgan import STRATEGIES, adam, create_state, make_models, make_train_step
from jaxgan.training.distributed import DataParallel

BATCH = 16  # global batch: 4 examples per device


def _batch(seed):
    rng = np.random.default_rng(seed)
    real = rng.uniform(size=(BATCH, 28, 28, 1)).astype(np.float32)
    noise = rng.standard_normal((BATCH, 100)).astype(np.float32)
    return as_float64((real, noise))


@functools.cache
def _initial(model):
    """The float32 initial state of `model`, cast to float64 (call under `enable_x64`), on the
    host: each run places (and donates) its own copy. BatchNorm's groups add no variables, so
    one state serves every `bn_groups`."""
    G, D = make_models(model, features=8)
    tx = adam()
    return jax.device_get(as_float64(create_state(jax.random.key(0), G, D, tx, tx)))


def _train(model, strategies, dp: DataParallel, bn_groups=1, steps=3):
    """`steps` Adam steps on fixed batches, the batch split over `dp`'s devices, in float64:
    `{strategy: final state}`, each strategy from the same initial state.

    The strategies' steps are compiled as one program, as XLA:CPU compiles five steps together
    in a third of the time it takes for them apart; each strategy still updates its own state.
    """
    G, D = make_models(model, features=8, bn_groups=bn_groups)
    tx = adam()
    updates = {name: make_train_step(name, G, D, tx, tx) for name in strategies}

    def step_all(states, real, noise):
        return {name: update(states[name], real, noise)[0] for name, update in updates.items()}

    states = {name: dp.replicate(_initial(model)) for name in strategies}
    step = jax.jit(
        step_all,
        in_shardings=(dp.replicated, dp.batch, dp.batch),
        out_shardings=dp.replicated,
        donate_argnums=0,
    )
    for seed in range(steps):
        real, noise = _batch(10 * seed)
        states = step(states, jax.device_put(real, dp.batch), jax.device_put(noise, dp.batch))
    states = jax.device_get(states)
    assert_float64(states)
    return states


def _max_diff(a, b):
    return max(
        float(np.max(np.abs(x - y)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@functools.cache
def _all_strategies(model, devices: int):
    """`_train(model, STRATEGIES, ...)` over `devices` devices, global BatchNorm statistics."""
    return _train(model, STRATEGIES, DataParallel.create(devices))


def step_equivalence():
    """Sharded over 4 devices against one device, same global batches, every strategy."""
    out = {}
    with jax.enable_x64(True):
        for model in ("mlp", "dcgan"):
            initial = _initial(model)
            all_sharded, all_single = (_all_strategies(model, n) for n in (4, 1))
            for strategy in STRATEGIES:
                sharded, single = all_sharded[strategy], all_single[strategy]
                out[f"{model}/{strategy}"] = {
                    "params": _max_diff((sharded.g_params, sharded.d_params),
                                        (single.g_params, single.d_params)),
                    "batch_stats": _max_diff((sharded.g_batch_stats, sharded.d_batch_stats),
                                             (single.g_batch_stats, single.d_batch_stats)),
                    "moved": _max_diff(single.g_params, initial.g_params),
                }  # fmt: skip
    return out


def per_device_batchnorm():
    """bn_stats="per_device": 4 devices equal one device with 4 BatchNorm groups, and differ
    from global statistics (step_equivalence's sharded run, when both run in one process)."""
    four, one = DataParallel.create(4), DataParallel.create(1)
    with jax.enable_x64(True):
        sharded, grouped = (
            _train("dcgan", ["two_pass"], dp, bn_groups=4)["two_pass"] for dp in (four, one)
        )
        global_stats = _all_strategies("dcgan", 4)["two_pass"]
    return {
        "sharded_vs_grouped": _max_diff(sharded.g_params, grouped.g_params),
        "per_device_vs_global": _max_diff(sharded.g_params, global_stats.g_params),
    }


def sharded_resume(workdir, data_dir):
    """A run over 4 devices, stopped after one epoch and resumed, against an uninterrupted one.

    Returns the largest parameter difference (expected: exactly 0) and the final steps.
    """
    from jaxgan.training.checkpoint import Checkpointer
    from jaxgan.training.cli import main
    from jaxgan.training.config import TrainConfig
    from jaxgan.training.run import Run, run_keys

    common = ["--data-dir", data_dir, "--train-examples", "640", "--log-every", "4",
              "--devices", "4", "--no-progress"]  # fmt: skip
    assert main([*common, "--epochs", "2", "--workdir", f"{workdir}/full"]) == 0
    assert main([*common, "--epochs", "1", "--workdir", f"{workdir}/part"]) == 0
    assert main([*common, "--epochs", "2", "--workdir", f"{workdir}/part", "--resume"]) == 0
    run = Run.build(TrainConfig())
    like = run.init_state(run_keys(0)["init"])
    states = [
        Checkpointer(f"{workdir}/{name}").restore(like, run_keys(0))[0] for name in ("full", "part")
    ]
    return {"max_diff": _max_diff(*states), "steps": [int(s.step) for s in states]}


# The CLI run that tests/test_sharding.py trains in two processes of one device each, and
# here in one process over two devices.
TWO_DEVICE_RUN = ["--train-examples", "640", "--epochs", "1", "--log-every", "5", "--no-progress"]


def two_device_run(workdir, data_dir):
    """`TWO_DEVICE_RUN` over two of this process's devices, into `workdir/single`: what
    scripts/train.py runs (its epoch's samples scored)."""
    from jaxgan.__main__ import train as main

    args = ["--data-dir", data_dir, *TWO_DEVICE_RUN, "--devices", "2"]
    assert main([*args, "--workdir", f"{workdir}/single"]) == 0
    return {"workdir": f"{workdir}/single"}


if __name__ == "__main__":
    # Several checks may run in one process (names joined by "+"), sharing its compiled runs
    # and what it imported.
    checks = {
        f.__name__: f
        for f in (step_equivalence, per_device_batchnorm, sharded_resume, two_device_run)
    }
    names = sys.argv[1].split("+")
    results = {name: checks[name](*sys.argv[2:]) for name in names}
    print(json.dumps(results if len(names) > 1 else results[names[0]]))
