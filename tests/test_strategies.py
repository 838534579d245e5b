"""Each strategy's gradients, checked against an independent computation of what it claims.

The optimizer here is plain SGD that also records the gradient it was given, so after one step
`state.g_opt_state` and `state.d_opt_state` hold exactly the gradients G and D received. The
expected gradients are computed from scratch with `jax.grad` of the losses written out in
log-sigmoid form, never through `jaxgan.strategies`.

Everything runs in float64 (STYLE.md, lesson 14): the networks are initialized in float32 as in
training, then every floating-point leaf and input is cast, exactly, to float64. Two orders of
the same sums then agree to ~1e-13 of the largest term on any CPU, so the tolerances below are
portable; float32 would leave ~1e-6, which depends on the machine's summation order.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numerics import as_float64, assert_float64

from jaxgan import STRATEGIES, adam, create_state, make_models, make_train_step
from jaxgan.models import MODELS

# The steps and gradients below are computed once per module (`problems`): under pytest-xdist,
# keep the module in one worker, so that they are not compiled in both.
pytestmark = pytest.mark.xdist_group("test_strategies")

B = 8
LR = 0.1
# Float64 rounding of a gradient element: each is a chain of sums of at most ~1e4 products
# (the MLP's 1024-wide layers, or B x 14 x 14 x features positions of a convolution), so two
# summation orders differ by at most ~1e4 * 1.1e-16 ~ 1e-12 of the largest terms, which are of
# the order of the largest gradient (measured: up to 4e-14 of it). `RTOL` of that scale leaves a
# margin of 1000 for the chain of layers.
RTOL = 1e-9
# A wrong gradient (one loss term missing or added) must be this many tolerances away, i.e.
# differ by 1e-3 of the gradient's scale; the strategies tested differ by 8e-2 of it or more.
SEPARATION = 1e6
LOSSES = ("g_loss", "d_loss", "both")


@pytest.fixture(scope="module", autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def recording_sgd(lr: float) -> optax.GradientTransformation:
    """SGD whose state is the last gradient it received."""

    def init(params):
        return jax.tree.map(jnp.zeros_like, params)

    def update(grads, state, params=None):
        del state, params
        return jax.tree.map(lambda g: -lr * g, grads), grads

    return optax.GradientTransformation(init, update)


def small_models(name, num_classes=None):
    # The same architectures; the DCGAN narrowed so that the tests stay fast.
    features = 8 if name == "dcgan" else 64
    return make_models(name, features=features, num_classes=num_classes)


def batch(seed: int = 1, num_classes=None):
    """A float32 batch `(real, noise)`, as training feeds; with labels for `num_classes`."""
    rng = np.random.default_rng(seed)
    real = rng.uniform(size=(B, 28, 28, 1)).astype(np.float32)
    noise = rng.standard_normal((B, 100)).astype(np.float32)
    if num_classes is None:
        return real, noise
    real_labels, fake_labels = rng.integers(0, num_classes, (2, B), dtype=np.int32)
    return (real, real_labels), (noise, fake_labels)


def counting(fn):
    """`fn` and the list it appends to each time it is traced (a Python call under `jit`)."""
    traces = []

    def traced(*args):
        traces.append(None)
        return fn(*args)

    return traced, traces


class Problem:
    """One model pair at its initial point, in float64, with the losses written out
    independently.

    With `num_classes`, the pair is class-conditional: real images come with their labels and
    G's noise with the labels it is asked to draw; D judges each image with its label.
    The jitted steps and the expected gradients are computed once and kept: several tests ask
    for the same ones.
    """

    def __init__(self, name: str, num_classes: int | None = None):
        self.G, self.D = small_models(name, num_classes)
        sgd = recording_sgd(LR)
        self.state = as_float64(create_state(jax.random.key(0), self.G, self.D, sgd, sgd))
        self.optimizer = sgd
        self.num_classes = num_classes
        self.real, self.noise = as_float64(batch(num_classes=num_classes))
        self.conditional = num_classes is not None
        self._step_all, self._steps, self._grad_all, self._grads = None, {}, None, None
        self._calls = {}

    def _labelled(self, batch):
        return batch if self.conditional else (batch,)

    def g(self, g_params):
        variables = {"params": g_params, "batch_stats": self.state.g_batch_stats}
        inputs = self._labelled(self.noise)
        return self.G.apply(variables, *inputs, train=True, mutable=["batch_stats"])[0]

    def d(self, d_params, images, labels=None):
        variables = {"params": d_params, "batch_stats": self.state.d_batch_stats}
        inputs = (images,) if labels is None else (images, labels)
        return self.D.apply(variables, *inputs, train=True, mutable=["batch_stats"])[0]

    def d_fake(self, g_params, d_params):
        labels = self.noise[1] if self.conditional else None
        return self.d(d_params, self.g(g_params), labels)

    def d_real(self, d_params):
        return self.d(d_params, *self._labelled(self.real))

    def g_loss(self, g_params, d_params):
        return -jax.nn.log_sigmoid(self.d_fake(g_params, d_params)).mean()

    def d_loss(self, g_params, d_params):
        fake = self.d_fake(g_params, d_params)
        real = self.d_real(d_params)
        return -jax.nn.log_sigmoid(-fake).mean() - jax.nn.log_sigmoid(real).mean()

    def both(self, g_params, d_params):
        return self.g_loss(g_params, d_params) + self.d_loss(g_params, d_params)

    def jitted_steps(self):
        """`(step_all, {strategy: the list of its traces})`, built once.

        `step_all(states, real, noise)` takes and returns `{strategy: state}` (and metrics):
        every strategy's step in one jitted program, each on its own state. XLA:CPU compiles
        the five together in a third of the time it takes for them apart.
        """
        if self._step_all is None:
            traced = {}
            for name in STRATEGIES:
                raw = make_train_step(name, self.G, self.D, self.optimizer, self.optimizer)
                traced[name] = counting(raw)

            def step_all(states, real, noise):
                return {name: fn(states[name], real, noise) for name, (fn, _) in traced.items()}

            self._step_all = jax.jit(step_all), {n: traces for n, (_, traces) in traced.items()}
        return self._step_all

    def train_call(self, net: str):
        """`(params, batch_stats, x) -> (output, new batch_stats)`: one training-mode call of
        `net` ("G" or "D"), jitted once."""
        if net not in self._calls:
            module = getattr(self, net)

            def call(params, stats, x):
                variables = {"params": params, "batch_stats": stats}
                out, mutated = module.apply(variables, x, train=True, mutable=["batch_stats"])
                return out, mutated["batch_stats"]

            self._calls[net] = jax.jit(call)
        return self._calls[net]

    def step(self, strategy: str):
        """One step from the initial state -> (G's gradient, D's gradient, new state, metrics)."""
        if not self._steps:
            step_all, _ = self.jitted_steps()
            results = step_all(dict.fromkeys(STRATEGIES, self.state), self.real, self.noise)
            for name, (new_state, metrics) in results.items():
                assert_float64((new_state, metrics))
                self._steps[name] = new_state.g_opt_state, new_state.d_opt_state, new_state, metrics
        return self._steps[strategy]

    def grads(self, loss: str, g_params=None, d_params=None):
        """`(∇_G loss, ∇_D loss)`, `loss` one of g_loss, d_loss, both; at the initial point
        unless other parameters are given. The three losses' gradients are one compiled
        program (compiled together, in less than half the time they take apart)."""
        if self._grad_all is None:
            losses = {name: jax.grad(getattr(self, name), argnums=(0, 1)) for name in LOSSES}
            self._grad_all = jax.jit(lambda g, d: {name: f(g, d) for name, f in losses.items()})
        at_start = g_params is None and d_params is None
        if at_start and self._grads is not None:
            return self._grads[loss]
        g_params = self.state.g_params if g_params is None else g_params
        d_params = self.state.d_params if d_params is None else d_params
        grads = self._grad_all(g_params, d_params)
        assert_float64(grads)
        if at_start:
            self._grads = grads
        return grads[loss]


# The helpers below compute on the host, with NumPy: eager JAX operations would compile one
# program per operation and leaf shape.
def sgd_step(params, grads):
    return jax.tree.map(lambda p, g: np.asarray(p) - LR * np.asarray(g), params, grads)


def max_diff(a, b) -> float:
    return max(
        float(np.abs(np.asarray(x) - np.asarray(y)).max())
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def scale(tree) -> float:
    return max(float(np.abs(np.asarray(x)).max()) for x in jax.tree.leaves(tree))


def assert_close(actual, expected):
    """Equal to float64 rounding (`RTOL`), measured against the size of the whole tree.

    Gradients summed in a different order differ by rounding relative to the terms summed, not
    to the result: an element that cancels to near zero keeps an absolute error of the order of
    the network's larger gradients. (The MLP generator's biases before BatchNorm have a zero
    gradient in exact arithmetic; what either computation returns for them is such rounding.)
    So the absolute tolerance is `RTOL` times the largest element of the tree.
    """
    assert_float64(actual)
    assert_float64(expected)
    atol = RTOL * scale(expected)
    for (path, e), a in zip(
        jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(actual), strict=True
    ):
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=atol, err_msg=jax.tree_util.keystr(path))


def assert_matches_not(actual, expected, wrong):
    """`actual` equals `expected` to float64 rounding and is far from the `wrong` alternative:
    more than `SEPARATION` times the tolerance (`RTOL` of the gradient's scale) away."""
    assert_close(actual, expected)
    assert max_diff(actual, wrong) > SEPARATION * RTOL * scale(expected)


@pytest.fixture(scope="module")
def problems():
    """`(model, num_classes) -> Problem`, each built once for the module."""
    cache = {}

    def get(name: str, num_classes: int | None = None) -> Problem:
        if (name, num_classes) not in cache:
            cache[name, num_classes] = Problem(name, num_classes)
        return cache[name, num_classes]

    return get


@pytest.fixture(
    scope="module",
    params=[(m, c) for c in (None, 10) for m in MODELS],
    ids=lambda p: f"{p[0]}-{'conditional' if p[1] else 'plain'}",
)
def problem(request, problems):
    return problems(*request.param)


def grad_g(f, p: Problem, g_params=None, d_params=None):
    return p.grads(f.__name__, g_params, d_params)[0]


def grad_d(f, p: Problem, g_params=None, d_params=None):
    return p.grads(f.__name__, g_params, d_params)[1]


def test_two_pass_trains_d_on_fakes_from_the_updated_generator(problem):
    p = problem
    g_grad, d_grad, _, _ = p.step("two_pass")
    expected_g = grad_g(p.g_loss, p)
    assert_close(g_grad, expected_g)
    g_next = sgd_step(p.state.g_params, expected_g)
    assert_matches_not(d_grad, grad_d(p.d_loss, p, g_params=g_next), wrong=grad_d(p.d_loss, p))


def test_shared_joint_gives_both_networks_the_gradient_of_the_sum(problem):
    p = problem
    g_grad, d_grad, _, _ = p.step("shared_joint")
    assert_matches_not(g_grad, grad_g(p.both, p), wrong=grad_g(p.g_loss, p))
    assert_matches_not(d_grad, grad_d(p.both, p), wrong=grad_d(p.d_loss, p))


def test_shared_sequential_gives_d_the_d_loss_alone(problem):
    p = problem
    g_grad, d_grad, _, _ = p.step("shared_sequential")
    assert_matches_not(g_grad, grad_g(p.g_loss, p), wrong=grad_g(p.both, p))
    assert_matches_not(d_grad, grad_d(p.d_loss, p), wrong=grad_d(p.both, p))


def test_shared_accumulate_adds_g_loss_gradient_to_d(problem):
    p = problem
    g_grad, d_grad_acc, _, _ = p.step("shared_accumulate")
    _, d_grad_seq, _, _ = p.step("shared_sequential")
    assert_matches_not(g_grad, grad_g(p.g_loss, p), wrong=grad_g(p.both, p))
    # What the notes describe: D's update is d_loss's gradient plus g_loss's.
    difference = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), d_grad_acc, d_grad_seq)
    assert_close(difference, grad_d(p.g_loss, p))
    assert_matches_not(d_grad_acc, grad_d(p.both, p), wrong=d_grad_seq)


def test_d_first_trains_g_through_the_updated_discriminator(problem):
    p = problem
    g_grad, d_grad, _, _ = p.step("d_first")
    expected_d = grad_d(p.d_loss, p)
    assert_close(d_grad, expected_d)
    d_next = sgd_step(p.state.d_params, expected_d)
    assert_matches_not(g_grad, grad_g(p.g_loss, p, d_params=d_next), wrong=grad_g(p.g_loss, p))


def test_gradient_on_discriminator_logits_shows_method_1_is_cooperative(problems):
    # The MLP discriminator's last layer has a bias b, and ∂L/∂b is the sum of the loss's
    # gradients on the logits. For g_loss + d_loss that is Σ_fake (2σ(s) - 1)/B (both networks
    # pushed towards σ = 1/2 on fakes) plus Σ_real (σ(r) - 1)/B; for d_loss alone it is
    # Σ_fake σ(s)/B plus the same real part.
    p = problems("mlp")
    logits = jax.jit(lambda g, d: (p.d_fake(g, d), p.d_real(d)))
    fake, real = (np.asarray(x) for x in logits(p.state.g_params, p.state.d_params))

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    real_part = ((sigmoid(real) - 1) / B).sum()
    cooperative = ((2 * sigmoid(fake) - 1) / B).sum() + real_part
    adversarial = (sigmoid(fake) / B).sum() + real_part
    expected = {
        "shared_joint": cooperative,
        "shared_accumulate": cooperative,
        "shared_sequential": adversarial,
    }
    # A sum of 2B terms of size at most 1/B: float64 rounding is ~1e-15 absolute.
    atol = 1e-12
    for strategy, value in expected.items():
        _, d_grad, _, _ = p.step(strategy)
        last_bias = d_grad["Dense_2"]["bias"][0]
        assert last_bias.dtype == jnp.float64
        np.testing.assert_allclose(last_bias, value, rtol=RTOL, atol=atol, err_msg=strategy)
    assert abs(float(cooperative - adversarial)) > SEPARATION * atol


NETWORK_CALLS = {  # (G calls, D calls) per step, as the PyTorch code makes them
    "two_pass": (2, 3),
    "shared_joint": (1, 2),
    "shared_sequential": (1, 2),
    "shared_accumulate": (1, 2),
    "d_first": (1, 3),
}
_SHARED = [("G", 0, "z"), ("D", 0, "fake0"), ("D", 0, "real")]  # one forward pass, kept
# The calls that update running statistics, in order: (network, its params, input). Each
# training-mode call moves the statistics once, so replaying these and landing on the step's
# statistics checks the number of calls as well as their order and inputs.
CALL_ORDER = {
    "two_pass": [("G", 0, "z"), ("D", 0, "fake0"), ("G", 1, "z"), ("D", 0, "fake1"),
                 ("D", 0, "real")],
    "shared_joint": _SHARED,
    "shared_sequential": _SHARED,
    "shared_accumulate": _SHARED,
    "d_first": [("G", 0, "z"), ("D", 0, "real"), ("D", 0, "fake0"), ("D", 1, "fake0")],
}  # fmt: skip


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_running_statistics_follow_the_pytorch_call_order(strategy, problems):
    calls = [net for net, _, _ in CALL_ORDER[strategy]]
    assert (calls.count("G"), calls.count("D")) == NETWORK_CALLS[strategy]
    p = problems("dcgan")
    state = p.state
    _, _, new_state, _ = p.step(strategy)

    g_params = [state.g_params, new_state.g_params]
    d_params = [state.d_params, new_state.d_params]
    g_stats, d_stats = state.g_batch_stats, state.d_batch_stats
    inputs = {"z": p.noise, "real": p.real}
    for net, version, name in CALL_ORDER[strategy]:
        if net == "G":
            fake, g_stats = p.train_call("G")(g_params[version], g_stats, inputs[name])
            inputs[f"fake{version}"] = fake
        else:
            _, d_stats = p.train_call("D")(d_params[version], d_stats, inputs[name])
    assert_close(new_state.g_batch_stats, g_stats)
    assert_close(new_state.d_batch_stats, d_stats)


# One model's strategies in a row: their eager runs share compiled operations.
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", MODELS)
def test_jit_matches_eager_and_never_retraces(strategy, model, problems):
    # Recording SGD: compares gradients, which Adam's normalisation would blur.
    p = problems(model)
    raw_step = make_train_step(strategy, p.G, p.D, p.optimizer, p.optimizer)
    with jax.disable_jit():
        eager_state, eager_metrics = raw_step(p.state, p.real, p.noise)

    step_all, traces = p.jitted_steps()
    _, _, state, metrics = p.step(strategy)
    for field in ("g_params", "d_params", "g_opt_state", "d_opt_state", "g_batch_stats",
                  "d_batch_stats"):  # fmt: skip
        if jax.tree.leaves(getattr(state, field)):
            assert_close(getattr(state, field), getattr(eager_state, field))
    for name, value in metrics.items():  # losses and mean probabilities, all of order 1
        np.testing.assert_allclose(value, eager_metrics[name], rtol=RTOL, err_msg=name)
    assert_float64(metrics)
    states = {name: p.step(name)[2] for name in STRATEGIES}
    for seed in range(2, 5):  # new data each step: one trace, one compilation
        results = step_all(states, *as_float64(batch(seed)))
        states = {name: new_state for name, (new_state, _) in results.items()}
    state, metrics = results[strategy]
    assert len(traces[strategy]) == 1
    assert int(state.step) == 4
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_unknown_strategy_names_the_choices():
    G, D = make_models("mlp")
    with pytest.raises(ValueError, match="two_pass"):
        make_train_step("simultaneous", G, D, adam(), adam())
