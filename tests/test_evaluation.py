"""Loading a trained run back, sampling it, and `scripts/evaluate.py` end to end on real MNIST."""

import importlib.util
import json
import math
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from jaxgan.config import TrainConfig
from jaxgan.evaluation import generate
from jaxgan.train import Run, load_run, run_keys, train

ROOT = Path(__file__).parents[1]
# 640 examples in batches of 64: 10 updates per epoch; checkpoints at steps 10 and 20.
TINY = {"train_examples": 640, "batch_size": 64, "log_every": 5, "num_samples": 16, "epochs": 2}


def _evaluate_cli():
    spec = importlib.util.spec_from_file_location("evaluate_cli", ROOT / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def trained(mnist_dir, tmp_path_factory):
    """`(workdir, final state)` of a two-epoch DCGAN run on 640 images, with a tanh generator."""
    workdir = tmp_path_factory.mktemp("run")
    config = TrainConfig(
        model="dcgan", features=8, pixel_range="symmetric", data_dir=str(mnist_dir), **TINY
    )
    with pytest.warns(UserWarning, match="only 10 updates"):
        return workdir, train(config, workdir, progress=False)


def test_load_run_restores_the_final_and_an_earlier_checkpoint(trained):
    workdir, final = trained
    config, run, state = load_run(workdir)
    assert config == TrainConfig.from_json((workdir / "config.json").read_text())
    assert run.config == config and config.model == "dcgan"
    chex.assert_trees_all_equal(state, final)

    _, _, earlier = load_run(workdir, step=10)
    assert int(earlier.step) == 10
    with pytest.raises(AssertionError):
        chex.assert_trees_all_equal(earlier.g_params, final.g_params)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 7 \(saved: \[10, 20\]\)"):
        load_run(workdir, step=7)
    with pytest.raises(FileNotFoundError, match="no training run"):
        load_run(workdir / "elsewhere")


def test_generate_maps_a_tanh_generator_to_unit_range_in_batches():
    config = TrainConfig(model="mlp", pixel_range="symmetric")
    run = Run.build(config)
    state = run.init_state(run_keys(0)["init"])
    images = generate(run, state, num_samples=10, seed=3, batch_size=4)
    noise = jax.random.normal(jax.random.key(3), (10, config.latent_dim))
    raw = np.asarray(run.generate(state, noise))
    assert images.shape == (10, 28, 28, 1) and raw.min() < 0
    np.testing.assert_allclose(images, (raw + 1) / 2, atol=1e-6)


def test_evaluate_script_writes_every_metric_for_samples_and_real_data(
    trained, mnist_dir, tmp_path, capsys
):
    workdir, _ = trained
    out = tmp_path / "eval.json"
    status = _evaluate_cli()([
        str(workdir), "--data-dir", str(mnist_dir), "--num-samples", "200",
        "--test-images", "1000", "--json", str(out),
    ])  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "real reference (train vs test)" in printed and "classifier_score" in printed
    result = json.loads(out.read_text())
    assert result["step"] == 20 and result["num_samples"] == 200
    assert result["num_test_images"] == 1000
    assert result["config"]["pixel_range"] == "symmetric"
    names = {"frechet_distance", "kid", "kid_std", "precision", "recall", "classifier_score",
             "classifier_score_std", "classes_covered", "class_kl_uniform"}  # fmt: skip
    for column in ("generated", "reference"):
        values = result[column]["metrics"]
        assert set(values) == names
        assert all(math.isfinite(v) for v in values.values())
        assert values["frechet_distance"] >= 0 and values["kid_std"] >= 0
        assert 0 <= values["precision"] <= 1 and 0 <= values["recall"] <= 1
        assert 1 <= values["classifier_score"] <= 10
        assert values["classes_covered"] in range(11)
        assert 0 <= values["class_kl_uniform"] <= math.log(10) + 1e-9
        fractions = result[column]["class_fractions"]
        assert len(fractions) == 10 and sum(fractions) == pytest.approx(1)
    real, fake = result["reference"]["metrics"], result["generated"]["metrics"]
    assert real["classes_covered"] == 10 and real["classifier_score"] > 6  # 10 splits of 20
    assert fake["frechet_distance"] > 10 * real["frechet_distance"]  # 20 updates: not digits yet


def test_evaluate_script_fails_clearly(trained, mnist_dir, tmp_path, capsys):
    workdir, evaluate = trained[0], _evaluate_cli()
    assert evaluate([str(tmp_path), "--data-dir", str(mnist_dir)]) == 2
    assert "holds no training run" in capsys.readouterr().err
    assert evaluate([str(workdir), "--data-dir", str(mnist_dir), "--step", "3"]) == 2
    assert "no checkpoint at step 3" in capsys.readouterr().err
    assert evaluate([str(workdir), "--data-dir", str(tmp_path / "missing")]) == 2
    assert "data: " in capsys.readouterr().err
    assert evaluate([str(workdir), "--num-samples", "0"]) == 2
    assert "--num-samples must be at least 10, got 0" in capsys.readouterr().err
