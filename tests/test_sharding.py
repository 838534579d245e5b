"""Data parallelism on 4 simulated CPU devices, and two processes joined on 127.0.0.1.

The device count is fixed when JAX starts, so each check runs in a fresh process
(tests/sharded_checks.py) with `XLA_FLAGS=--xla_force_host_platform_device_count=N`.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sharded_checks import TWO_DEVICE_RUN, _max_diff

ROOT = Path(__file__).parents[1]
# Sharded against single-device steps, compared in float64 (tests/sharded_checks.py), where the
# order of the sums across devices changes a gradient by ~1e-16 of the terms summed. Adam's
# update lr m / (sqrt(v) + eps) turns a change d of a gradient far below eps into a change of
# lr d / eps = 2e4 d of the step: the MLP generator's biases before BatchNorm have a zero
# gradient in exact arithmetic, and what either run computes is the rounding of a sum of 16
# per-example terms of at most ~2.3 (the largest gradients): below 16 * 1.1e-16 * 2.3 = 4e-15.
# So parameters differ by at most 3 steps * 2e4 * 4e-15 = 2.4e-10 (measured: 1.2e-14). The
# running statistics are means of at most 16 x 14 x 14 = 3136 activations of order 10: rounding
# below 3136 * 1.1e-16 * 10 = 3.5e-12, plus what the parameters' difference moves them by.
# A step that lost a device's share of the gradient would move parameters by up to the learning
# rate (2e-4) per step: five orders of magnitude above the tolerance.
PARAMS_ATOL = 1e-9
STATS_ATOL = 1e-9


def _env(devices: int) -> dict[str, str]:
    """This process's environment with `devices` simulated CPU devices; other XLA flags (a
    second pass's GEMM backend, say) are kept."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    return {**os.environ, "XLA_FLAGS": flags.strip(), "PYTHONPATH": str(ROOT)}


def run_check(name: str, *args: str, devices: int = 4) -> dict:
    env = _env(devices)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sharded_checks.py"), name, *args],
        env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# The two step checks run in one process, which compiles each sharded run once: under
# pytest-xdist, in one worker.
STEP_CHECKS = pytest.mark.xdist_group("sharded_steps")


@pytest.fixture(scope="module")
def step_checks():
    return run_check("step_equivalence+per_device_batchnorm")


@STEP_CHECKS
def test_sharded_step_matches_single_device_for_every_strategy(step_checks):
    results = step_checks["step_equivalence"]
    assert len(results) == 10  # five strategies, two models
    for name, diff in results.items():
        assert diff["params"] < PARAMS_ATOL, name
        assert diff["batch_stats"] < STATS_ATOL, name
        assert diff["moved"] > 50 * PARAMS_ATOL, name  # the comparison is not of idle weights


@STEP_CHECKS
def test_per_device_batchnorm_is_ghost_batchnorm_of_the_device_shares(step_checks):
    result = step_checks["per_device_batchnorm"]
    assert result["sharded_vs_grouped"] < PARAMS_ATOL
    assert result["per_device_vs_global"] > 100 * PARAMS_ATOL


# The CLI's runs in a 4-device process: the sharded resume check, and the one-process side of
# the two-process check. One process and one xdist group, which imports and starts once.
CLI_RUNS = pytest.mark.xdist_group("sharded_cli")


@pytest.fixture(scope="module")
def cli_runs(mnist_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sharded_cli")
    return run_check("sharded_resume+two_device_run", str(workdir), str(mnist_dir))


@CLI_RUNS
def test_sharded_run_checkpoints_and_resumes_bit_for_bit(cli_runs):
    result = cli_runs["sharded_resume"]
    assert result["steps"] == [20, 20]
    assert result["max_diff"] == 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(args, devices: int) -> subprocess.Popen:
    env = _env(devices)
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _final_params(workdir):
    """`(final params, initial params, step)` of a run's newest checkpoint."""
    import jax

    from jaxgan.training.checkpoint import Checkpointer
    from jaxgan.training.config import TrainConfig
    from jaxgan.training.run import Run, run_keys

    run = Run.build(TrainConfig.from_json((workdir / "config.json").read_text()))
    like = run.init_state(run_keys(0)["init"])
    state = Checkpointer(workdir).restore(like, run_keys(0))[0]
    params = jax.device_get(((state.g_params, state.d_params), (like.g_params, like.d_params)))
    return *params, int(state.step)


@CLI_RUNS
def test_two_processes_train_like_one_process_with_two_devices(mnist_dir, tmp_path, cli_runs):
    common = ["--data-dir", str(mnist_dir), *TWO_DEVICE_RUN]
    address = f"127.0.0.1:{_free_port()}"
    workers = [
        _cli([*common, "--workdir", str(tmp_path / "multi"), "--coordinator-address", address,
              "--num-processes", "2", "--process-id", str(i)], devices=1)
        for i in range(2)
    ]  # fmt: skip
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
    runs = {"multi": tmp_path / "multi", "single": Path(cli_runs["two_device_run"]["workdir"])}

    multi_params, initial, multi_step = _final_params(runs["multi"])
    single_params, _, single_step = _final_params(runs["single"])
    assert multi_step == single_step == 10
    import jax

    # Both runs execute the same SPMD program over two devices, on the same data, noise and
    # per-device shapes (32 examples each); the only cross-device arithmetic is the all-reduce
    # of two partial sums, exact in either order. Not bit for bit on every machine, though: how
    # each process's XLA splits the per-device work over the cores it may use differs between
    # one process with two devices and two with one (identical on 2 free cores; under
    # `taskset -c 0` the weights came out up to 2e-7 apart, where training moved them by
    # ~1e-3), and Adam carries that float32 rounding into the weights. So each weight array
    # must agree to 1e-3 of how far training moved it, plus a few float32 ulps of its values;
    # a process that skipped the all-reduce or saw other data would train on other gradients,
    # which moves weights apart by the order of the movement itself. Excluded: the generator's
    # biases that feed a BatchNorm (Dense_1 to Dense_3), which has a zero gradient in exact
    # arithmetic (BatchNorm subtracts the batch mean), so both runs move them by rounding alone.
    ulps = 8 * float(np.finfo(np.float32).eps)
    for (path, m), s, i in zip(jax.tree_util.tree_leaves_with_path(multi_params),
                               jax.tree.leaves(single_params), jax.tree.leaves(initial),
                               strict=True):  # fmt: skip
        name = jax.tree_util.keystr(path)
        if name.startswith("[0]") and any(f"'Dense_{k}']['bias']" in name for k in (1, 2, 3)):
            continue
        tolerance = 1e-3 * _max_diff(s, i) + ulps * float(np.abs(s).max())
        assert _max_diff(m, s) < tolerance, name
    # Only process 0 wrote logs and images: as many as the one process did, no line twice (the
    # losses at steps 5 and 10, then the epoch's sample scores).
    multi, single = ([json.loads(line) for line in (runs[run] / "metrics.jsonl").open()]
                     for run in ("multi", "single"))  # fmt: skip
    assert [row["step"] for row in multi] == [row["step"] for row in single] == [5, 10, 10]
    assert "sample_classifier_score" in multi[-1]
    images = {run: sorted(p.name for p in (runs[run] / "samples").iterdir())
              for run in ("multi", "single")}  # fmt: skip
    assert images["multi"] == images["single"] and "epoch_0001.png" in images["multi"]


def test_batch_that_does_not_split_is_refused(mnist_dir, tmp_path):
    proc = _cli(["--data-dir", str(mnist_dir), "--train-examples", "640", "--devices", "3",
                 "--workdir", str(tmp_path)], devices=4)  # fmt: skip
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "batch_size 64 does not split evenly over 3 devices" in err
