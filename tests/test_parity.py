"""jaxgan against the notes' PyTorch code: every strategy, both models, on real MNIST batches.

Both models also in their class-conditional versions, on MNIST's labels and a seeded draw of
labels for G, with the plain models' tolerances.

The check runs both sides in float64 from the same float32 weights and inputs (docs/parity.md
explains why float32 cannot be held to 1e-5 over many steps). The MLP is full size; the DCGAN
is narrowed to `features=8`, because PyTorch's float64 convolutions on the CPU are slow (the
layouts and the arithmetic do not depend on the width).
"""

import json

import numpy as np
import pytest
import torch

from jaxgan import MODELS, STRATEGIES
from jaxgan.training.data import load_idx_split
from parity import compare, reference
from parity.__main__ import main

# Under pytest-xdist, keep the module in one worker: the runs it shares (`all_strategies`) are
# not repeated in both. The checks that the check fails, and the runner's, run jaxgan's side as
# the program a fixture already compiled (every strategy of one model, 64 examples a step, in
# float64), which XLA's compilation cache then serves: a few steps of each, not a compilation.
pytestmark = pytest.mark.xdist_group("test_parity")

STEPS = 10
FEATURES = 8


@pytest.fixture(scope="module", autouse=True)
def parity_precision():
    """The matmul precision `python -m parity` sets (`compare.fp32_precision`), for every test:
    the runner's tests then find jaxgan's side already compiled by the fixtures."""
    with compare.fp32_precision(tf32=False):
        yield


NUM_CLASSES = compare.NUM_CLASSES


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_idx_split(mnist_dir, "train")


@pytest.fixture(scope="module")
def batches(mnist):
    return compare.mnist_batches(mnist.images, STEPS, 64)


@pytest.fixture(scope="module")
def conditional_batches(mnist):
    """`((images, labels), (noise, G's labels))`: MNIST's own labels, G's drawn with the seed."""
    return compare.mnist_batches(mnist.images, STEPS, 64, labels=mnist.labels)


@pytest.fixture(scope="module")
def all_strategies(batches, conditional_batches):
    """`(model, conditional) -> {strategy: rows}`, each model's strategies run together once
    (`compare.run_strategies`: one compiled program for jaxgan's five steps)."""
    cache = {}

    def rows(model: str, conditional: bool) -> dict[str, list[compare.Row]]:
        if (model, conditional) not in cache:
            inputs = conditional_batches if conditional else batches
            options = {"num_classes": NUM_CLASSES} if conditional else {}
            cache[model, conditional] = compare.run_strategies(
                STRATEGIES, model, *inputs, features=FEATURES, **options
            )
        return cache[model, conditional]

    return rows


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", MODELS)
def test_jaxgan_computes_what_the_pytorch_code_computes(strategy, model, all_strategies):
    rows = all_strategies(model, conditional=False)[strategy]
    assert len(rows) == STEPS
    assert {r.strategy for r in rows} == {strategy}
    failures = [f"step {r.step}: {f}" for r in rows for f in r.failures()]
    assert not failures, failures


EPSILON_STRATEGIES = ["two_pass", "d_first"]  # G twice; D twice


@pytest.fixture(scope="module")
def gan_py_epsilon(batches):
    """The MLP with PyTorch-GAN's BatchNorm epsilon, 0.8: `{strategy: rows}`."""
    return compare.run_strategies(EPSILON_STRATEGIES, "mlp", *batches, bn_epsilon=0.8)


@pytest.mark.parametrize("strategy", EPSILON_STRATEGIES)
def test_pytorch_gans_batchnorm_epsilon_of_0_8_matches_too(strategy, batches, gan_py_epsilon):
    # jaxgan's default is PyTorch's 1e-5; PyTorch-GAN's gan.py runs the MLP with eps 0.8, which
    # is what its users train, so the reference is checked there as well.
    rows = gan_py_epsilon[strategy]
    assert len(rows) == STEPS
    failures = [f"step {r.step}: {f}" for r in rows for f in r.failures()]
    assert not failures, failures
    if strategy == "two_pass":  # and the check sees the epsilon: 1e-5 on one side fails it
        first_steps = (x[:2] for x in batches)
        wrong = compare.run_strategies(
            EPSILON_STRATEGIES, "mlp", *first_steps, bn_epsilon=0.8, reference_epsilon=1e-5
        )[strategy]
        assert any(r.failures() for r in wrong)


EXTRA_LAYERS_STRATEGIES = ["two_pass", "d_first"]  # G twice; D twice


@pytest.fixture(scope="module")
def dcgan_extra_layers(batches, conditional_batches):
    """The DCGAN with two 3x3 blocks at 7x7 in each network (docs/dcgan.md's recipe has three),
    plain and conditional: `{conditional: {strategy: rows}}`."""
    plain = {"features": FEATURES, "extra_layers": 2}
    conditional = {**plain, "num_classes": NUM_CLASSES}
    return {
        False: compare.run_strategies(EXTRA_LAYERS_STRATEGIES, "dcgan", *batches, **plain),
        True: compare.run_strategies(
            EXTRA_LAYERS_STRATEGIES, "dcgan", *conditional_batches, **conditional
        ),
    }


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
@pytest.mark.parametrize("strategy", EXTRA_LAYERS_STRATEGIES)
def test_the_dcgan_with_extra_layers_computes_what_the_pytorch_code_computes(
    strategy, conditional, dcgan_extra_layers
):
    rows = dcgan_extra_layers[conditional][strategy]
    assert len(rows) == STEPS
    failures = [f"step {r.step}: {f}" for r in rows for f in r.failures()]
    assert not failures, failures


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", MODELS)
def test_the_conditional_models_compute_what_the_pytorch_code_computes(
    strategy, model, all_strategies
):
    rows = all_strategies(model, conditional=True)[strategy]
    assert len(rows) == STEPS
    assert {r.strategy for r in rows} == {strategy}
    failures = [f"step {r.step}: {f}" for r in rows for f in r.failures()]
    assert not failures, failures


def test_the_conditional_batches_hold_mnists_labels_and_a_seeded_draw(mnist, conditional_batches):
    (_, real_labels), (noise, gen_labels) = conditional_batches
    np.testing.assert_array_equal(real_labels.reshape(-1), mnist.labels[: STEPS * 64])
    again = compare.mnist_batches(mnist.images, STEPS, 64, labels=mnist.labels)[1][1]
    np.testing.assert_array_equal(gen_labels, again)
    assert set(np.unique(gen_labels)) == set(range(NUM_CLASSES))
    # The noise is the plain run's: the labels are drawn after it.
    np.testing.assert_array_equal(noise, compare.mnist_batches(mnist.images, STEPS, 64)[1])


def _shuffled(labelled, seed):
    """`(x, labels)` with each step's labels permuted within the batch."""
    x, labels = labelled
    rng = np.random.default_rng(seed)
    return x, np.stack([rng.permutation(step) for step in labels])


@pytest.mark.parametrize("which", ["real", "noise"])
def test_the_check_fails_when_one_side_gets_shuffled_labels(which, conditional_batches):
    real, noise = ((x[:2], y[:2]) for x, y in conditional_batches)
    ref = {"real": real, "noise": noise}
    ref[which] = _shuffled(ref[which], seed=1)
    rows = compare.run_strategies(
        STRATEGIES,
        "mlp",
        real,
        noise,
        num_classes=NUM_CLASSES,
        reference_inputs=(ref["real"], ref["noise"]),
    )["shared_sequential"]
    # The labels change what is computed, far outside the tolerance: the check sees them.
    assert rows[-1].diffs["params"] > 1e4 * compare.TOLERANCES["mlp"]["params"]
    assert rows[-1].failures()


# Pairs of strategies that differ in one term of one network's gradient.
NEIGHBOURS = [
    ("shared_sequential", "shared_accumulate"),  # D's gradient with or without ∇_D g_loss
    ("shared_accumulate", "shared_joint"),  # G's gradient with or without ∇_G d_loss
    ("two_pass", "shared_sequential"),  # D trained on fakes from G_{t+1} or from G_t
]


@pytest.fixture(scope="module")
def swapped_references(batches):
    """Two steps of each neighbour pair's first strategy against the reference running the
    second: `{strategy: rows}` (the strategies in no pair run against their own)."""
    real, noise = (x[:2] for x in batches)
    swapped = dict(NEIGHBOURS)
    references = [swapped.get(strategy, strategy) for strategy in STRATEGIES]
    return compare.run_strategies(STRATEGIES, "mlp", real, noise, reference_strategies=references)


@pytest.mark.parametrize(("strategy", "swapped"), NEIGHBOURS)
def test_the_check_fails_when_the_reference_is_another_strategy(
    strategy, swapped, swapped_references
):
    rows = swapped_references[strategy]
    assert len(rows) == 2 and {r.strategy for r in rows} == {strategy}
    # Far outside the tolerance, not just over it: the check separates semantics from rounding.
    assert rows[-1].diffs["params"] > 1e4 * compare.TOLERANCES["mlp"]["params"]
    assert rows[-1].failures()


def _random_batch(num_classes):
    real, noise = torch.rand(4, 1, 28, 28), torch.randn(4, 100)
    if num_classes is None:
        return real, noise
    return (real, torch.randint(num_classes, (4,))), (noise, torch.randint(num_classes, (4,)))


@pytest.mark.parametrize("num_classes", [None, NUM_CLASSES], ids=["plain", "conditional"])
@pytest.mark.parametrize("model", MODELS)
def test_the_notes_method_2_as_written_raises_the_inplace_error(model, num_classes):
    torch.manual_seed(0)
    G, D = reference.make_models(model, FEATURES, num_classes)
    optimizers = reference.make_optimizer(G), reference.make_optimizer(D)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        reference.shared_sequential_as_written(G, D, *optimizers, *_random_batch(num_classes))


NETWORK_CALLS = {  # (G calls, D calls) per step, as in tests/test_strategies.py
    "two_pass": (2, 3),
    "shared_joint": (1, 2),
    "shared_sequential": (1, 2),
    "shared_accumulate": (1, 2),
    "d_first": (1, 3),
}


@pytest.mark.parametrize("num_classes", [None, NUM_CLASSES], ids=["plain", "conditional"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_reference_calls_each_network_as_jaxgan_does(strategy, num_classes):
    # PyTorch counts training-mode BatchNorm calls in num_batches_tracked.
    G, D = reference.make_models("dcgan", 8, num_classes)
    optimizers = reference.make_optimizer(G), reference.make_optimizer(D)
    for _ in range(2):
        reference.STRATEGIES[strategy](G, D, *optimizers, *_random_batch(num_classes))
    g_calls, d_calls = NETWORK_CALLS[strategy]
    assert int(G.main[1].num_batches_tracked) == 2 * g_calls
    assert int(D.main[3].num_batches_tracked) == 2 * d_calls


def test_float32_losses_from_the_same_weights_agree_to_rounding(batches):
    real, noise = (x[:1] for x in batches)
    kinds = {"jax_dtype": "float32", "torch_dtype": "float32"}
    (row,) = compare.run("shared_joint", "mlp", real, noise, **kinds)
    # One shared forward pass at identical weights: the losses (about 1.4) differ by rounding.
    assert row.diffs["loss"] < 1e-6


def test_runner_prints_the_table_and_writes_json(mnist_dir, tmp_path, capsys):
    out = tmp_path / "parity.json"
    argv = ["--strategy", "all", "--model", "dcgan", "--steps", "2"]
    argv += ["--features", str(FEATURES), "--data-dir", str(mnist_dir), "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "modified by an inplace operation" in printed
    assert "PASS" in printed
    report = json.loads(out.read_text())
    rows = [(r["strategy"], r["model"], r["step"]) for r in report["rows"]]
    assert rows == [(s, "dcgan", step) for s in STRATEGIES for step in (1, 2)]
    assert report["passed"] and all(np.isfinite(r["params"]) for r in report["rows"])


def test_runner_runs_the_conditional_models(mnist_dir, tmp_path, capsys):
    out = tmp_path / "parity.json"
    argv = ["--strategy", "all", "--model", "mlp", "--steps", "1", "--conditional"]
    assert main([*argv, "--data-dir", str(mnist_dir), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "conditional on 10 classes" in printed and "PASS" in printed
    report = json.loads(out.read_text())
    assert report["num_classes"] == NUM_CLASSES and report["passed"]


def test_runner_says_where_the_data_should_be(tmp_path, capsys):
    assert main(["--model", "mlp", "--steps", "1", "--data-dir", str(tmp_path / "none")]) == 2
    assert "--data-dir" in capsys.readouterr().err
