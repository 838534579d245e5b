"""Loading a trained run back, sampling it, and `scripts/evaluate.py` end to end on real MNIST,
for plain and conditional runs."""

import importlib.util
import json
import math
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from jaxgan import metrics
from jaxgan.config import TrainConfig
from jaxgan.data import load_idx_split
from jaxgan.evaluation import Evaluator, balanced_labels, evaluate_run, generate
from jaxgan.train import Run, load_run, run_keys

ROOT = Path(__file__).parents[1]
NAMES = {"frechet_distance", "kid", "kid_std", "precision", "recall", "classifier_score",
         "classifier_score_std", "classes_covered", "class_kl_uniform"}  # fmt: skip
PER_CLASS = [f"class_accuracy_{k}" for k in range(10)]
# Generated pixels compared in float64: each is the tanh or sigmoid of a chain of sums of at most
# 1024 products, rounded to ~1e-13 in any order; 1e-9 leaves a margin of 1e4. (In float32 the
# rounding, ~1e-7, would depend on how the GEMMs are blocked for each batch size.)
ATOL64 = 1e-9


def _float64(tree):
    return jax.tree.map(
        lambda x: x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x, tree
    )


def _evaluate_cli():
    spec = importlib.util.spec_from_file_location("evaluate_cli", ROOT / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_load_run_restores_the_final_and_an_earlier_checkpoint(plain_run):
    workdir, final = plain_run
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
    with jax.enable_x64(True):  # float64: batching changes only ~1e-15, on any CPU
        state = _float64(state)
        images = generate(run, state, num_samples=10, seed=3, batch_size=4)
        noise = jax.random.normal(jax.random.key(3), (10, config.latent_dim))
        raw = np.asarray(run.generate(state, noise))
    assert images.dtype == raw.dtype == np.float64
    assert images.shape == (10, 28, 28, 1) and raw.min() < 0
    np.testing.assert_allclose(images, (raw + 1) / 2, atol=ATOL64)


def test_balanced_labels_cycle_through_the_classes():
    np.testing.assert_array_equal(balanced_labels(100, 10), np.arange(100) % 10)
    np.testing.assert_array_equal(np.bincount(balanced_labels(100, 10)), [10] * 10)
    np.testing.assert_array_equal(np.bincount(balanced_labels(25, 10)), [3] * 5 + [2] * 5)


def test_generate_feeds_a_conditional_generator_balanced_labels_in_batches():
    config = TrainConfig(model="mlp", conditional=True)
    run = Run.build(config)
    state = run.init_state(run_keys(0)["init"])
    with jax.enable_x64(True):  # float64: batching changes only ~1e-15, on any CPU
        state = _float64(state)
        images = generate(run, state, num_samples=25, seed=3, batch_size=10)
        noise = jax.random.normal(jax.random.key(3), (25, config.latent_dim))
        raw = np.asarray(run.generate(state, (noise, np.arange(25) % 10)))
        # The labels reach the generator: the same noise drawn as one class gives other images.
        all_zeros = np.asarray(run.generate(state, (noise, np.zeros(25, np.int32))))
    assert images.dtype == raw.dtype == np.float64
    np.testing.assert_allclose(images, raw, atol=ATOL64)
    assert np.abs(images - all_zeros).max() > 1e-3


def test_evaluate_script_writes_every_metric_for_samples_and_real_data(
    plain_run, mnist_dir, tmp_path, capsys
):
    workdir, _ = plain_run
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
    assert "class_accuracy" not in printed
    for column in ("generated", "reference"):
        values = result[column]["metrics"]
        assert set(values) == NAMES
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


def test_evaluate_script_fails_clearly(plain_run, mnist_dir, tmp_path, capsys):
    workdir, evaluate = plain_run[0], _evaluate_cli()
    assert evaluate([str(tmp_path), "--data-dir", str(mnist_dir)]) == 2
    assert "holds no training run" in capsys.readouterr().err
    assert evaluate([str(workdir), "--data-dir", str(mnist_dir), "--step", "3"]) == 2
    assert "no checkpoint at step 3" in capsys.readouterr().err
    assert evaluate([str(workdir), "--data-dir", str(tmp_path / "missing")]) == 2
    assert "data: " in capsys.readouterr().err
    assert evaluate([str(workdir), "--num-samples", "0"]) == 2
    assert "--num-samples must be at least 10, got 0" in capsys.readouterr().err


def test_evaluate_script_scores_a_conditional_run_by_class_accuracy(
    conditional_run, mnist_dir, tmp_path, capsys
):
    out = tmp_path / "eval.json"
    status = _evaluate_cli()([
        str(conditional_run), "--data-dir", str(mnist_dir), "--num-samples", "200",
        "--test-images", "1000", "--json", str(out),
    ])  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "class_accuracy per requested class (0-9):" in printed
    result = json.loads(out.read_text())
    assert result["config"]["conditional"] and result["step"] == 10
    for column in ("generated", "reference"):
        values = result[column]["metrics"]
        assert set(values) == NAMES | {"class_accuracy", *PER_CLASS}
        # Balanced labels: the overall accuracy is the mean over the classes.
        assert values["class_accuracy"] == pytest.approx(np.mean([values[k] for k in PER_CLASS]))

    # The generated column: the classifier's predictions against the labels generate drew.
    _, run, state = load_run(conditional_run)
    _, probs = metrics.features(generate(run, state, 200))
    overall, per_class = metrics.class_accuracy(probs, np.arange(200) % 10)
    generated = result["generated"]["metrics"]
    assert generated["class_accuracy"] == overall
    assert [generated[k] for k in PER_CLASS] == per_class.tolist()

    # The reference column: real training images with their true labels, which the shipped
    # classifier (99.4% on the test set) gets right.
    reference = result["reference"]["metrics"]
    assert reference["class_accuracy"] >= 0.97
    assert min(reference[k] for k in PER_CLASS) >= 0.85
    train = load_idx_split(mnist_dir, "train")
    drawn = metrics.reference_draw(train.images, 200)
    _, real_probs = metrics.features(drawn)
    labels = metrics.reference_draw(train.labels, 200)
    assert reference["class_accuracy"] == metrics.class_accuracy(real_probs, labels)[0]


def test_a_conditional_reference_needs_the_training_labels(conditional_run):
    images = np.zeros((20, 28, 28, 1), np.uint8)
    with pytest.raises(ValueError, match="needs train_labels"):
        evaluate_run(conditional_run, Evaluator(images), train_images=images, num_samples=10)
