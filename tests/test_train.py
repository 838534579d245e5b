"""The training application end to end on a slice of real MNIST: outputs, resume, interrupt,
divergence and bad settings."""

import dataclasses
import hashlib
import json
import os
import re
import shutil
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

import jaxgan.training.data
import jaxgan.training.run
from jaxgan.__main__ import train as main
from jaxgan.training import (
    Checkpointer,
    ConfigError,
    NonFiniteLossError,
    TrainConfig,
    load_idx_split,
    run_keys,
    train,
)
from jaxgan.training.checkpoint import MANIFEST
from jaxgan.training.distributed import DataParallel
from jaxgan.training.logs import plot_losses

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
    captured = capsys.readouterr()
    err, out = captured.err, captured.out
    assert "steps/s" in err and "g_loss" in err  # the progress bar shows losses and speed
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses, scores = records[:-1], records[-1]
    assert [r["step"] for r in losses] == [5, 10, 15, 20]
    assert all(np.isfinite(r[k]) for r in losses for k in ("g_loss", "d_loss", "d_real"))
    # The epoch's 2,000 samples, scored by the MNIST classifier (1: one class; 10: the most).
    assert scores["step"] == 20 and scores["epoch"] == 1
    assert 1 <= scores["sample_classifier_score"] <= 10
    assert scores["sample_classes_covered"] in range(1, 11)
    grid = np.asarray(Image.open(workdir / "samples" / "epoch_0001.png"))
    # 8x8 tiles of 28x28 with 2 pixels of grey between neighbours.
    assert grid.shape == (8 * 30 - 2, 8 * 30 - 2) and grid.dtype == np.uint8 and grid.std() > 0
    real = np.asarray(Image.open(workdir / "samples" / "real.png"))
    assert real.shape == grid.shape and real[:28, :28].max() == 255  # a digit, white on black
    assert Image.open(workdir / "losses.png").size[0] > 0
    assert TrainConfig.from_json((workdir / "config.json").read_text()).strategy == "two_pass"
    assert Checkpointer(workdir).latest_step() == 20
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(workdir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("g_loss")] == [5, 10, 15, 20]
    assert [e.step for e in events.Scalars("sample_classifier_score")] == [20]
    assert [e.step for e in events.Images("samples")] == [20]
    # The closing summary: what to look at and what to run next.
    for text in ("done: 20 steps", "last losses: g_loss", "classifier score",
                 f"jaxgan-sample {workdir}", f"jaxgan-evaluate {workdir}"):  # fmt: skip
        assert text in out, out


def test_tensorboard_events_are_written_without_importing_pytorch(tmp_path):
    # tensorboardX imports PyTorch when it is installed; the run's logger keeps it out (2-3 s
    # per run), and PyTorch stays importable afterwards.
    code = (
        "import sys, numpy as np\n"
        "from jaxgan.training.logs import MetricsLog\n"
        f"log = MetricsLog({str(tmp_path)!r})\n"
        "log.write(3, {'g_loss': 0.5})\n"
        "log.image('samples', np.full((4, 6), 200, np.uint8), 3)\n"
        "log.close()\n"
        "print('torch' in sys.modules)\n"
        "import torch\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("g_loss")] == [(3, 0.5)]
    (image,) = events.Images("samples")
    assert (image.step, image.width, image.height) == (3, 6, 4)


def test_the_loss_plot_of_a_single_log_point_shows_it(tmp_path):
    record = {"step": 10, "epoch": 1, "g_loss": 2.0, "d_loss": 1.0, "d_real": 0.7, "d_fake": 0.3}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    plot_losses(tmp_path / "metrics.jsonl", tmp_path / "losses.png")
    pixels = np.asarray(Image.open(tmp_path / "losses.png").convert("RGB")).astype(int)
    blue = np.abs(pixels - [31, 119, 180]).sum(-1) < 60  # matplotlib's first colour, g_loss
    assert blue.sum() > 20  # a marker, not an empty axis


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
    common = ["--data-dir", str(mnist_dir), "--train-examples", "640", "--log-every", "2",
              "--workdir", str(tmp_path / "run")]  # fmt: skip
    args = [sys.executable, str(ROOT / "scripts" / "train.py"), *common, "--epochs", "40",
            "--no-progress"]  # fmt: skip
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

    # Resumed to the end of the epoch after the interrupted one (10 steps an epoch), not all 40:
    # what is checked is that the run continues where it stopped, and the rest costs minutes.
    epochs = saved // 10 + 2
    status = main([*common, "--resume", "--epochs", str(epochs)])
    assert status == 0
    resumed = Checkpointer(tmp_path / "run")
    assert resumed.latest_step() == 10 * epochs
    config = TrainConfig(**{**SMALL, "log_every": 2, "epochs": epochs})
    uninterrupted = run(config, tmp_path / "full", mnist_train)
    state, _, _ = resumed.restore(uninterrupted, run_keys(0))
    chex.assert_trees_all_equal(state, uninterrupted)


def test_a_nan_loss_stops_the_run_at_its_step_and_keeps_the_last_good_checkpoint(
    mnist_train, tmp_path, monkeypatch
):
    make = jaxgan.training.run.make_train_step

    def poisoned(*args, **kwargs):
        step = make(*args, **kwargs)

        def wrapped(state, real, noise):  # NaN images from the 14th step on
            return step(state, jnp.where(state.step >= 13, jnp.nan, real), noise)

        return wrapped

    monkeypatch.setattr(jaxgan.training.run, "make_train_step", poisoned)
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
        (["--extra-layers", "1"], "extra_layers must be 0, or a positive count with --model dcgan"),
        (["--model", "dcgan", "--extra-layers", "-1"], "got -1 for 'dcgan'"),
    ],
)
def test_settings_that_make_no_sense_fail_before_training(mnist_dir, tmp_path, capsys, args,
                                                          message):  # fmt: skip
    workdir = tmp_path / "run"
    status = main(["--data-dir", str(mnist_dir), "--train-examples", "640", "--workdir",
                   str(workdir), *args])  # fmt: skip
    assert status == 2
    assert message in capsys.readouterr().err
    assert not workdir.exists()  # a failed start leaves nothing that blocks the retry


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
    assert os.listdir(tmp_path) == []


def test_conditional_run_draws_one_grid_row_per_class(mnist_train, tmp_path):
    state = run(small(epochs=1, conditional=True, num_samples=30), tmp_path, mnist_train)
    grid = np.asarray(Image.open(tmp_path / "samples" / "epoch_0001.png"))
    assert grid.shape == (10 * 30 - 2, 3 * 30 - 2)
    assert state.g_params["Embed_0"]["embedding"].shape == (10, 10)
    assert "projection" in state.d_params
    with pytest.raises(ConfigError, match="multiple of 10"):
        small(conditional=True, num_samples=64).validate()


def test_readme_commands_in_order_offline_then_with_the_data_dir(mnist_dir, tmp_path, capsys,
                                                                 monkeypatch):  # fmt: skip
    # A new user without internet: the first command fails fast and writes nothing, so the
    # second one, with the IDX files, trains into the same default workdir.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JAXGAN_DATA_DIR", raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))  # no cached MNIST
    monkeypatch.setattr(jaxgan.training.data, "_host_reachable", lambda host, timeout: False)
    assert main(["--strategy", "two_pass"]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    status = main(["--strategy", "two_pass", "--data-dir", str(mnist_dir), "--train-examples",
                   "640", "--epochs", "1", "--no-progress"])  # fmt: skip
    assert status == 0
    assert Checkpointer(tmp_path / "runs" / "latest").latest_step() == 10


def test_a_config_without_a_checkpoint_counts_as_an_empty_workdir(mnist_dir, tmp_path, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(small(strategy="d_first").to_json())  # never trained
    status = main(["--data-dir", str(mnist_dir), "--train-examples", "640", "--epochs", "1",
                   "--no-progress", "--workdir", str(workdir)])  # fmt: skip
    assert status == 0
    assert "holds a config.json but no checkpoint" in capsys.readouterr().err
    assert TrainConfig.load(workdir / "config.json").strategy == "two_pass"
    assert Checkpointer(workdir).latest_step() == 10


@pytest.fixture(scope="module")
def trained(mnist_dir, mnist_train, tmp_path_factory):
    """A two-epoch run with settings far from the defaults; checkpoints at steps 10 and 20."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    config = small(strategy="d_first", g_lr=1e-4, bn_epsilon=0.8, seed=3, log_every=5,
                   data_dir=str(mnist_dir))  # fmt: skip
    run(config, workdir, mnist_train)
    return workdir


def _copy(trained, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    return workdir


def test_resume_continues_with_the_saved_settings(trained, tmp_path, capsys):
    workdir = _copy(trained, tmp_path)
    status = main(["--resume", "--workdir", str(workdir), "--epochs", "3", "--no-progress"])
    assert status == 0, capsys.readouterr().err
    config = TrainConfig.load(workdir / "config.json")
    assert (config.strategy, config.g_lr, config.bn_epsilon, config.seed) == ("d_first", 1e-4,
                                                                              0.8, 3)  # fmt: skip
    assert config.epochs == 3 and Checkpointer(workdir).latest_step() == 30


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--strategy", "two_pass"], "--strategy: saved 'd_first', given 'two_pass'"),
        (["--lr", "2e-4"], "--g-lr: saved 0.0001, given 0.0002"),
        (["--bn-epsilon", "1e-5", "--seed", "0"], "--bn-epsilon: saved 0.8, given 1e-05; "
                                                  "--seed: saved 3, given 0"),
    ],
)  # fmt: skip
def test_resume_refuses_a_setting_that_would_change_the_run(trained, tmp_path, capsys, flags,
                                                            message):  # fmt: skip
    workdir = _copy(trained, tmp_path)
    assert main(["--resume", "--workdir", str(workdir), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "--epochs" in err  # names what may change instead
    assert Checkpointer(workdir).latest_step() == 20


def _set_record_devices(workdir, step, devices):
    """Rewrites a checkpoint's record as if it had been saved by a run on `devices` devices,
    its manifest entry included (else the checkpoint reads as damaged)."""
    step_dir = workdir / "checkpoints" / str(step)
    path = step_dir / "record" / "metadata"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "devices": devices}))
    manifest = step_dir / MANIFEST
    entries = json.loads(manifest.read_text())
    assert "record/metadata" in entries
    entries["record/metadata"] = [
        path.stat().st_size,
        hashlib.sha256(path.read_bytes()).hexdigest(),
    ]
    manifest.write_text(json.dumps(entries))


@pytest.mark.parametrize("bn_stats", ["global", "per_device"])
def test_the_device_count_may_change_on_resume_only_with_global_batchnorm(
    mnist_train, tmp_path, bn_stats
):
    config = small(epochs=1, bn_stats=bn_stats)
    run(config, tmp_path, mnist_train)
    _set_record_devices(tmp_path, 10, 2)  # as if trained on 2 devices; this machine has 1
    longer = dataclasses.replace(config, epochs=2)
    if bn_stats == "global":  # SyncBatchNorm statistics: the same on any device count
        assert int(run(longer, tmp_path, mnist_train, resume=True).step) == 20
    else:
        with pytest.raises(ConfigError, match="on 1 devices: it was trained on 2 with bn_stats"):
            run(longer, tmp_path, mnist_train, resume=True)


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_checkpoint_cut_short_resumes_from_the_one_before(trained, mnist_train, tmp_path,
                                                            damage):  # fmt: skip
    workdir = _copy(trained, tmp_path)
    data = [p for p in (workdir / "checkpoints" / "20").rglob("*") if p.is_file()]
    for path in data:
        if damage == "truncate" and path.parent.name == "d":  # the arrays' data files
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif damage == "delete" and path.name == "manifest.ocdbt":
            path.unlink()
    config = TrainConfig.load(workdir / "config.json")
    with pytest.warns(UserWarning) as caught:
        state = train(dataclasses.replace(config, epochs=3), workdir, dataset=mnist_train,
                      resume=True, progress=False)  # fmt: skip
    [damaged] = [str(w.message) for w in caught if "cannot read back" in str(w.message)]
    assert "step 20" in damaged and "using step 10 instead" in damaged
    assert (workdir / "damaged_checkpoints" / "20").is_dir()
    assert int(state.step) == 30 and Checkpointer(workdir).all_steps() == [20, 30]
    # The damage cost one epoch, not the result: the same parameters as never interrupted.
    full = run(dataclasses.replace(config, epochs=3), tmp_path / "full", mnist_train)
    chex.assert_trees_all_equal(state, full)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"strategy": "two_pass", "epochs": ', "is not valid JSON"),
        ('{"strategy": "simultaneous"}', "strategy must be one of"),
        ('{"model": "resnet"}', "model must be one of"),
    ],
)
def test_a_damaged_config_stops_with_a_message_naming_the_file(trained, tmp_path, capsys, text,
                                                               message):  # fmt: skip
    workdir = _copy(trained, tmp_path)
    (workdir / "config.json").write_text(text)
    assert main(["--resume", "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert str(workdir / "config.json") in err and message in err and "Traceback" not in err


def test_dtype_reaches_the_models_and_float32_leaves_them_at_the_parameters_dtype():
    # float32 means "the parameters' dtype" (None), so float64 checks of a run stay float64.
    for dtype, expected in (("float32", None), ("bfloat16", "bfloat16")):
        run = jaxgan.training.run.Run.build(TrainConfig(model="dcgan", dtype=dtype))
        assert run.generator.dtype == run.discriminator.dtype == expected
    with pytest.raises(ConfigError, match="dtype must be one of"):
        TrainConfig(dtype="float16").validate()


def _parameter_copies(compiled) -> list[str]:
    """The `copy` instructions of an optimized HLO module that copy a whole weight matrix."""
    copies = re.findall(r"= f32\[(\d+),(\d+)\]\S* copy\(", compiled.as_text())
    return [f"{m}x{n}" for m, n in copies if int(m) * int(n) >= 100 * 128]


def test_the_chunk_updates_parameters_in_place_and_computes_the_same_state():
    # XLA's default copy insertion copies every weight matrix once per step inside the chunk's
    # loop (the MLP: 12 to 13 of them); the CPU option removes them and must change no bit.
    config = small(strategy="shared_joint", batch_size=16, log_every=2)
    dp = DataParallel.create(1)
    built = jaxgan.training.run.Run.build(config, dp.size)
    keys = run_keys(0)
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)
    data = dp.replicate((jnp.asarray(images), jnp.zeros(64, jnp.int32)))
    order = jnp.arange(64)
    runner = jaxgan.training.run.make_chunk_runner(built.step_fn, config, dp)
    platform = dp.mesh.devices.flat[0].platform

    def chunk(options):
        state = dp.replicate(built.init_state(keys["init"]))
        args = (state, data, order, 0, keys["noise"], 2)
        compiled = runner.lower(*args).compile(options)
        return _parameter_copies(compiled), compiled(*args)

    copies, out = chunk(None)
    cpu_options = jaxgan.training.run.chunk_compiler_options("cpu")
    copies_default, out_default = chunk({name: False for name in cpu_options})
    chex.assert_trees_all_equal(out, out_default)
    if platform == "cpu":
        assert len(copies_default) >= 8, copies_default  # the check sees what it looks for
        assert copies == []
