"""The training application end to end on a slice of real MNIST: outputs, resume, interrupt,
divergence and bad settings."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import jaxgan.train
from jaxgan.checkpoint import Checkpointer
from jaxgan.cli import main
from jaxgan.config import ConfigError, TrainConfig
from jaxgan.data import load_idx_split
from jaxgan.train import NonFiniteLossError, train

ROOT = Path(__file__).parents[1]
# 640 examples in batches of 64: 10 updates per epoch, logged in dispatches of 4, 4 and 2.
SMALL = {"train_examples": 640, "batch_size": 64, "log_every": 4, "num_samples": 16}


@pytest.fixture(scope="module")
def mnist_train(mnist_dir):
    return load_idx_split(mnist_dir, "train")


def small(**changes) -> TrainConfig:
    return TrainConfig(**{**SMALL, "epochs": 2, **changes})


def run(config, workdir, dataset, **kwargs):
    with pytest.warns(UserWarning, match="only 10 updates per epoch"):
        return train(config, workdir, dataset=dataset, progress=False, **kwargs)


def test_cli_trains_one_epoch_and_writes_everything(mnist_dir, tmp_path, capsys):
    workdir = tmp_path / "run"
    status = main([
        "--strategy", "two_pass", "--data-dir", str(mnist_dir), "--train-examples", "1280",
        "--epochs", "1", "--log-every", "5", "--workdir", str(workdir),
    ])  # fmt: skip
    assert status == 0
    err = capsys.readouterr().err
    assert "steps/s" in err and "g_loss" in err  # the progress bar shows losses and speed
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert all(np.isfinite(r[k]) for r in records for k in ("g_loss", "d_loss", "d_real"))
    grid = np.asarray(Image.open(workdir / "samples" / "epoch_0001.png"))
    assert grid.shape == (8 * 28, 8 * 28) and grid.dtype == np.uint8 and grid.std() > 0
    assert Image.open(workdir / "losses.png").size[0] > 0
    assert TrainConfig.from_json((workdir / "config.json").read_text()).strategy == "two_pass"
    assert Checkpointer(workdir).latest_step() == 20
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(workdir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("g_loss")] == [5, 10, 15, 20]


def test_resume_reaches_the_uninterrupted_parameters_bit_for_bit(mnist_train, tmp_path):
    uninterrupted = run(small(epochs=3), tmp_path / "full", mnist_train)
    run(small(epochs=1), tmp_path / "part", mnist_train)
    resumed = run(small(epochs=3), tmp_path / "part", mnist_train, resume=True)
    assert int(resumed.step) == 30
    chex.assert_trees_all_equal(resumed, uninterrupted)
    full_log = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    part_log = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(r).items() if k != "steps_per_sec"} for r in full_log]
    assert strip == [
        {k: v for k, v in json.loads(r).items() if k != "steps_per_sec"} for r in part_log
    ]


def test_ctrl_c_saves_mid_epoch_and_resume_matches(mnist_dir, mnist_train, tmp_path):
    args = [
        sys.executable, str(ROOT / "scripts" / "train.py"), "--data-dir", str(mnist_dir),
        "--train-examples", "640", "--epochs", "40", "--log-every", "2", "--no-progress",
        "--workdir", str(tmp_path / "run"),
    ]  # fmt: skip
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "Traceback" not in err
    saved = Checkpointer(tmp_path / "run").latest_step()
    assert 0 < saved < 400

    status = main([*args[2:-3], "--workdir", str(tmp_path / "run"), "--resume"])
    assert status == 0
    resumed = Checkpointer(tmp_path / "run")
    config = TrainConfig(**{**SMALL, "log_every": 2, "epochs": 40})
    uninterrupted = run(config, tmp_path / "full", mnist_train)
    state, _, _ = resumed.restore(uninterrupted, jaxgan.train.run_keys(0))
    chex.assert_trees_all_equal(state, uninterrupted)


def test_a_nan_loss_stops_the_run_at_its_step_and_keeps_the_last_good_checkpoint(
    mnist_train, tmp_path, monkeypatch
):
    make = jaxgan.train.make_train_step

    def poisoned(*args, **kwargs):
        step = make(*args, **kwargs)

        def wrapped(state, real, noise):  # NaN images from the 14th step on
            return step(state, jnp.where(state.step >= 13, jnp.nan, real), noise)

        return wrapped

    monkeypatch.setattr(jaxgan.train, "make_train_step", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"became nan at step 14.*checkpoint is step 10"):
        run(small(), tmp_path, mnist_train)
    assert Checkpointer(tmp_path).latest_step() == 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "epochs must be a positive integer, got 0"),
        (["--batch-size", "-5"], "batch_size must be a positive integer"),
        (["--batch-size", "700"], "batch_size 700 is larger than the training set (640 examples)"),
        (["--lr", "0"], "g_lr must be positive"),
        (["--beta1", "1.5"], "beta1 must be in [0, 1)"),
    ],
)
def test_settings_that_make_no_sense_fail_before_training(mnist_dir, tmp_path, capsys, args,
                                                          message):  # fmt: skip
    workdir = tmp_path / "run"
    status = main(["--data-dir", str(mnist_dir), "--train-examples", "640", "--workdir",
                   str(workdir), *args])  # fmt: skip
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (workdir / "checkpoints").exists()


def test_unknown_strategy_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--strategy", "simultaneous"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--strategy" in err and "two_pass" in err and "d_first" in err


def test_few_updates_per_epoch_warns_with_the_count(mnist_dir, tmp_path, capsys):
    status = main([
        "--data-dir", str(mnist_dir), "--train-examples", "640", "--batch-size", "320",
        "--epochs", "1", "--workdir", str(tmp_path), "--no-progress",
    ])  # fmt: skip
    assert status == 0
    assert "makes only 2 updates per epoch" in capsys.readouterr().err


def test_workdir_is_not_overwritten_and_resume_refuses_other_settings(mnist_train, tmp_path):
    run(small(epochs=1), tmp_path, mnist_train)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(small(epochs=1), tmp_path, dataset=mnist_train)
    with pytest.raises(ConfigError, match="strategy: saved 'two_pass', now 'd_first'"):
        train(small(strategy="d_first"), tmp_path, dataset=mnist_train, resume=True)
    with pytest.raises(ConfigError, match="holds no run"):
        train(small(), tmp_path / "empty", dataset=mnist_train, resume=True)


def test_data_unavailable_is_a_clean_cli_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("JAXGAN_DATA_DIR", raising=False)
    status = main(["--data-dir", str(tmp_path / "missing"), "--workdir", str(tmp_path / "w")])
    assert status == 2
    assert "does not exist" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["w"]


def test_conditional_run_draws_one_grid_row_per_class(mnist_train, tmp_path):
    state = run(small(epochs=1, conditional=True, num_samples=30), tmp_path, mnist_train)
    grid = np.asarray(Image.open(tmp_path / "samples" / "epoch_0001.png"))
    assert grid.shape == (10 * 28, 3 * 28)
    assert state.g_params["Embed_0"]["embedding"].shape == (10, 10)
    assert "projection" in state.d_params
    with pytest.raises(ConfigError, match="multiple of 10"):
        small(conditional=True, num_samples=64).validate()
