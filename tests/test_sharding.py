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

ROOT = Path(__file__).parents[1]
# Measured over 3 Adam steps (tests/sharded_checks.py step_equivalence): the largest parameter
# difference between 4 devices and 1 was 5.2e-6 (MLP, two_pass), from the order of the sums
# across devices, which Adam's normalisation amplifies in near-zero gradients; BatchNorm running
# statistics differed by at most 4.4e-7. A step that lost a device's share of the gradient
# would move parameters by up to the learning rate (2e-4) per step.
PARAMS_ATOL = 1e-5
STATS_ATOL = 1e-6


def run_check(name: str, *args: str, devices: int = 4) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sharded_checks.py"), name, *args],
        env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sharded_step_matches_single_device_for_every_strategy():
    results = run_check("step_equivalence")
    assert len(results) == 10  # five strategies, two models
    for name, diff in results.items():
        assert diff["params"] < PARAMS_ATOL, name
        assert diff["batch_stats"] < STATS_ATOL, name
        assert diff["moved"] > 50 * PARAMS_ATOL, name  # the comparison is not of idle weights


def test_per_device_batchnorm_is_ghost_batchnorm_of_the_device_shares():
    result = run_check("per_device_batchnorm")
    assert result["sharded_vs_grouped"] < PARAMS_ATOL
    assert result["per_device_vs_global"] > 100 * PARAMS_ATOL


def test_sharded_run_checkpoints_and_resumes_bit_for_bit(mnist_dir, tmp_path):
    result = run_check("sharded_resume", str(tmp_path), str(mnist_dir))
    assert result["steps"] == [20, 20]
    assert result["max_diff"] == 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(args, devices: int) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _final_params(workdir):
    import jax

    from jaxgan.training.checkpoint import Checkpointer
    from jaxgan.training.config import TrainConfig
    from jaxgan.training.loop import Run, run_keys

    run = Run.build(TrainConfig.from_json((workdir / "config.json").read_text()))
    like = run.init_state(run_keys(0)["init"])
    state = Checkpointer(workdir).restore(like, run_keys(0))[0]
    return jax.device_get((state.g_params, state.d_params)), int(state.step)


def test_two_processes_train_like_one_process_with_two_devices(mnist_dir, tmp_path):
    common = ["--data-dir", str(mnist_dir), "--train-examples", "640", "--epochs", "1",
              "--log-every", "5", "--no-progress"]  # fmt: skip
    address = f"127.0.0.1:{_free_port()}"
    workers = [
        _cli([*common, "--workdir", str(tmp_path / "multi"), "--coordinator-address", address,
              "--num-processes", "2", "--process-id", str(i)], devices=1)
        for i in range(2)
    ]  # fmt: skip
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
    single = _cli([*common, "--workdir", str(tmp_path / "single"), "--devices", "2"], devices=2)
    _, err = single.communicate(timeout=600)
    assert single.returncode == 0, err[-3000:]

    multi_params, multi_step = _final_params(tmp_path / "multi")
    single_params, single_step = _final_params(tmp_path / "single")
    assert multi_step == single_step == 10
    import jax

    for a, b in zip(jax.tree.leaves(multi_params), jax.tree.leaves(single_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=PARAMS_ATOL)
    # Only process 0 wrote logs and images.
    assert len((tmp_path / "multi" / "metrics.jsonl").read_text().splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "multi" / "samples").iterdir()) == ["epoch_0001.png"]


def test_batch_that_does_not_split_is_refused(mnist_dir, tmp_path):
    proc = _cli(["--data-dir", str(mnist_dir), "--train-examples", "640", "--devices", "3",
                 "--workdir", str(tmp_path)], devices=4)  # fmt: skip
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "batch_size 64 does not split evenly over 3 devices" in err
