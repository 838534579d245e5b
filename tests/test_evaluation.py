"""Loading a trained run back, sampling it, and `jaxgan-evaluate` end to end, for plain and
conditional runs on MNIST and for a run on Fashion-MNIST, scored in its own classifier."""

import gzip
import json
import math

import chex
import jax
import numpy as np
import pytest
from numerics import as_float64

import jaxgan.eval.classifier
from jaxgan.__main__ import evaluate, train
from jaxgan.eval import Evaluator, draw_samples, evaluate_run, load_classifier, metrics
from jaxgan.eval.evaluation import DatasetMismatchError, reference_draw
from jaxgan.sampling import balanced_labels, generate
from jaxgan.training import ConfigError, Run, TrainConfig, load_idx_split, load_run, run_keys

NAMES = {"frechet_distance", "kid", "kid_std", "precision", "recall", "classifier_score",
         "classifier_score_std", "classes_covered", "class_kl_uniform"}  # fmt: skip
PER_CLASS = [f"class_accuracy_{k}" for k in range(10)]
ACCURACY = {"class_accuracy", *PER_CLASS}
# Generated pixels compared in float64: each is the tanh or sigmoid of a chain of sums of at most
# 1024 products, rounded to ~1e-13 in any order; 1e-9 leaves a margin of 1e4. (In float32 the
# rounding, ~1e-7, would depend on how the GEMMs are blocked for each batch size.)
ATOL64 = 1e-9


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


def test_draw_samples_maps_a_tanh_generator_to_unit_range_in_batches():
    config = TrainConfig(model="mlp", pixel_range="symmetric")
    run = Run.build(config)
    state = run.init_state(run_keys(0)["init"])
    with jax.enable_x64(True):  # float64: batching changes only ~1e-15, on any CPU
        state = as_float64(state)
        images = draw_samples(config, run.generator, state, num_samples=10, seed=3, batch_size=4)
        noise = jax.random.normal(jax.random.key(3), (10, config.latent_dim), np.float64)
        raw = np.asarray(generate(run.generator, state, noise))
    assert images.dtype == raw.dtype == np.float64
    assert images.shape == (10, 28, 28, 1) and raw.min() < 0
    np.testing.assert_allclose(images, np.clip((raw + 1) / 2, 0, 1), rtol=0, atol=ATOL64)


def test_balanced_labels_cycle_through_the_classes():
    np.testing.assert_array_equal(balanced_labels(100, 10), np.arange(100) % 10)
    np.testing.assert_array_equal(np.bincount(balanced_labels(100, 10)), [10] * 10)
    np.testing.assert_array_equal(np.bincount(balanced_labels(25, 10)), [3] * 5 + [2] * 5)


def test_draw_samples_feeds_a_conditional_generator_balanced_labels_in_batches():
    config = TrainConfig(model="mlp", conditional=True)
    run = Run.build(config)
    state = run.init_state(run_keys(0)["init"])
    with jax.enable_x64(True):  # float64: batching changes only ~1e-15, on any CPU
        state = as_float64(state)
        images = draw_samples(config, run.generator, state, num_samples=25, seed=3, batch_size=10)
        noise = jax.random.normal(jax.random.key(3), (25, config.latent_dim), np.float64)
        raw = np.asarray(generate(run.generator, state, (noise, np.arange(25) % 10)))
        # The labels reach the generator: the same noise drawn as one class gives other images.
        all_zeros = np.asarray(generate(run.generator, state, (noise, np.zeros(25, np.int32))))
    assert images.dtype == raw.dtype == np.float64
    np.testing.assert_allclose(images, np.clip(raw, 0, 1), rtol=0, atol=ATOL64)
    assert np.abs(images - all_zeros).max() > 1e-3


def _check_column(values: dict, names: set) -> None:
    assert set(values) == names
    assert all(math.isfinite(v) for v in values.values())
    assert values["frechet_distance"] >= 0 and values["kid_std"] >= 0
    assert 0 <= values["precision"] <= 1 and 0 <= values["recall"] <= 1
    assert 1 <= values["classifier_score"] <= 10
    assert values["classes_covered"] in range(11)
    assert 0 <= values["class_kl_uniform"] <= math.log(10) + 1e-9


def test_evaluate_writes_every_metric_for_samples_and_real_data(plain_run, tmp_path, capsys):
    workdir, _ = plain_run
    out = tmp_path / "eval.json"
    # No --data-dir: the run's own (its config.json names the folder it trained on).
    status = evaluate([str(workdir), "--num-samples", "200", "--test-images", "1000",
                       "--json", str(out)])  # fmt: skip
    assert status == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "real reference (train vs test)" in printed and "classifier_score" in printed
    assert "in the mnist classifier's feature space" in printed
    assert "Fréchet distance" in captured.err  # the progress bar names each stage
    result = json.loads(out.read_text())
    assert result["step"] == 20 and result["num_samples"] == 200 and result["dataset"] == "mnist"
    assert result["num_test_images"] == 1000
    assert result["config"]["pixel_range"] == "symmetric"
    assert "class_accuracy per requested class" not in printed
    _check_column(result["generated"]["metrics"], NAMES)
    _check_column(result["reference"]["metrics"], NAMES | ACCURACY)  # real labels, always
    for column in ("generated", "reference"):
        fractions = result[column]["class_fractions"]
        assert len(fractions) == 10 and sum(fractions) == pytest.approx(1)
    real, fake = result["reference"]["metrics"], result["generated"]["metrics"]
    assert real["classes_covered"] == 10 and real["classifier_score"] > 6  # 10 splits of 20
    assert fake["frechet_distance"] > 10 * real["frechet_distance"]  # 20 updates: not digits yet


def test_evaluate_fails_clearly(plain_run, mnist_dir, tmp_path, capsys):
    workdir = plain_run[0]
    assert evaluate([str(tmp_path), "--data-dir", str(mnist_dir)]) == 2
    assert "holds no training run" in capsys.readouterr().err
    assert evaluate([str(workdir), "--data-dir", str(mnist_dir), "--step", "3"]) == 2
    assert "no checkpoint at step 3" in capsys.readouterr().err
    assert evaluate([str(workdir), "--data-dir", str(tmp_path / "missing")]) == 2
    assert "data: " in capsys.readouterr().err
    assert evaluate([str(workdir), "--num-samples", "0"]) == 2
    assert "--num-samples must be at least 10, got 0" in capsys.readouterr().err


def test_evaluate_scores_a_conditional_run_by_class_accuracy(conditional_run, mnist_dir,
                                                             tmp_path, capsys):  # fmt: skip
    out = tmp_path / "eval.json"
    status = evaluate([str(conditional_run), "--data-dir", str(mnist_dir), "--num-samples",
                       "200", "--test-images", "1000", "--json", str(out)])  # fmt: skip
    assert status == 0
    assert "class_accuracy per requested class:" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["config"]["conditional"] and result["step"] == 10
    for column in ("generated", "reference"):
        values = result[column]["metrics"]
        assert set(values) == NAMES | ACCURACY
        # Balanced labels: the overall accuracy is the mean over the classes.
        assert values["class_accuracy"] == pytest.approx(np.mean([values[k] for k in PER_CLASS]))

    # The generated column: the classifier's predictions against the labels the samples had.
    config, run, state = load_run(conditional_run)
    classifier = load_classifier("mnist")
    _, probs = metrics.features(draw_samples(config, run.generator, state, 200), classifier)
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
    _, real_probs = metrics.features(reference_draw(train.images, 200), classifier)
    labels = reference_draw(train.labels, 200)
    assert reference["class_accuracy"] == metrics.class_accuracy(real_probs, labels)[0]


def test_the_reference_needs_the_training_labels(plain_run):
    images = np.zeros((20, 28, 28, 1), np.uint8)
    with pytest.raises(ValueError, match="needs the training labels"):
        evaluate_run(plain_run[0], Evaluator(images), train_images=images, num_samples=10)


def _write_idx(path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file: magic 0x08nn (nn dimensions), the dimensions, the bytes."""
    dims = b"".join(d.to_bytes(4, "big") for d in array.shape)
    header = (0x800 + array.ndim).to_bytes(4, "big") + dims
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


@pytest.fixture(scope="module")
def tiny_fashion(fashion_dir, tmp_path_factory):
    """A Fashion-MNIST folder of 640 training and 1,000 test images, in its IDX format."""
    folder = tmp_path_factory.mktemp("fashion")
    for split, prefix, count in (("train", "train", 640), ("test", "t10k", 1000)):
        data = load_idx_split(fashion_dir, split).take(count)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", data.images[..., 0])
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", data.labels)
    return folder


def test_a_fashion_mnist_run_is_scored_by_the_fashion_mnist_classifier(tiny_fashion, tmp_path,
                                                                       capsys):  # fmt: skip
    workdir = tmp_path / "run"
    assert train(["--dataset", "fashion_mnist", "--data-dir", str(tiny_fashion), "--epochs",
                  "1", "--no-progress", "--workdir", str(workdir)]) == 0  # fmt: skip
    out = tmp_path / "eval.json"
    assert evaluate([str(workdir), "--num-samples", "200", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "in the fashion_mnist classifier's feature space" in printed
    assert "Ankle boot" in printed and "T-shirt/top" in printed  # the classes by name
    result = json.loads(out.read_text())
    assert result["dataset"] == "fashion_mnist"
    # The Fashion-MNIST classifier knows these real images; MNIST's would get about 10% right.
    assert result["reference"]["metrics"]["class_accuracy"] > 0.8
    fashion = load_idx_split(tiny_fashion, "train")
    with pytest.raises(DatasetMismatchError, match="mnist classifier gets only"):
        Evaluator(fashion.images[:100], "mnist").reference(fashion.images, fashion.labels, 200)


def test_a_dataset_without_a_classifier_stops_with_its_name(plain_run, capsys, monkeypatch):
    monkeypatch.setattr(jaxgan.eval.classifier, "WEIGHTS_FILES", {"fashion_mnist": "x"})
    assert evaluate([str(plain_run[0]), "--num-samples", "20"]) == 2
    err = capsys.readouterr().err
    assert "no classifier for dataset 'mnist'; jaxgan can score ['fashion_mnist']" in err


def test_a_damaged_run_config_is_named(tmp_path):
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ConfigError, match=r"config\.json is not valid JSON"):
        load_run(tmp_path)
