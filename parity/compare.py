"""Running jaxgan and the PyTorch reference side by side, and the table of their differences.

Both sides start from the same weights (jaxgan's initial state, converted exactly into the
reference) and get the same float32 real batches and noise; for the class-conditional models
also the same labels, the real images' own and a seeded draw for G. After every step the reference's
weights, BatchNorm statistics and Adam moments are converted back to flax layout and compared
with jaxgan's, leaf by leaf; each row of the table is the largest absolute difference of one
kind of quantity, over both networks. `TOLERANCES` bounds each column, and `docs/parity.md`
explains how those bounds were measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jaxgan
from jaxgan.choices import NUM_CLASSES
from jaxgan.models import BN_EPSILON
from jaxgan.state import GANState
from jaxgan.training.data import to_float
from parity import DTYPE_NAMES, QUANTITIES, convert, reference

# Images `[steps, B, 28, 28, 1]` (or noise `[steps, B, 100]`), and for the conditional models
# with their int labels `[steps, B]`: `(images, labels)`, `(noise, labels)`.
Batches = np.ndarray | tuple[np.ndarray, np.ndarray]
# What each side computes in, by name: (JAX dtype, PyTorch dtype).
DTYPES = dict(
    zip(DTYPE_NAMES, ((jnp.float32, torch.float32), (jnp.float64, torch.float64)), strict=True)
)

# Largest absolute difference allowed at any step when both sides compute in float64, per model
# and column: 100x the largest value measured on CPU over all five strategies and 20 steps,
# rounded up to a power of ten (docs/parity.md has the measurements and the reasoning). The
# differences are rounding, which grows with the number of steps: these hold for runs of up to
# TOLERANCE_STEPS steps. There are no float32 tolerances: two correct float32 implementations
# drift apart by far more than 1e-5 within 20 steps of this training problem (docs/parity.md).
TOLERANCE_STEPS = 20
TOLERANCES: dict[str, dict[str, float]] = {
    "mlp": dict(loss=1e-13, params=1e-10, bn_stats=1e-11, adam_mu=1e-13, adam_nu=1e-16),
    "dcgan": dict(loss=1e-11, params=1e-10, bn_stats=1e-13, adam_mu=1e-11, adam_nu=1e-13),
}


@dataclasses.dataclass(frozen=True)
class Row:
    """The largest absolute differences after one step of one strategy on one model."""

    strategy: str
    model: str
    step: int
    diffs: dict[str, float]
    where: dict[str, str]  # the leaf and index of each largest difference

    def failures(self, tolerances: dict[str, dict[str, float]] = TOLERANCES) -> list[str]:
        """The columns over their tolerance (a NaN is over), as `'column diff > tol at leaf'`."""
        bounds = tolerances[self.model]
        return [
            f"{q} {self.diffs[q]:.2e} > {bounds[q]:.0e} at {self.where[q]}"
            for q in QUANTITIES
            if not self.diffs[q] <= bounds[q]
        ]


def _max_abs_diff(a, b) -> tuple[float, str]:
    """The largest absolute difference between `[G's tree, D's tree]` pairs, and where it is."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        return float("inf"), "tree structures differ"
    worst, where = 0.0, ""
    for (path, x), y in zip(
        jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True
    ):
        diff = np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))
        d = float(diff.max(initial=0.0))
        if not d <= worst:  # NaN wins
            index = [int(i) for i in np.unravel_index(diff.argmax(), diff.shape)]
            names = "/".join(str(k.key) for k in path[1:])
            worst, where = d, f"{'GD'[path[0].idx]} {names}{index}"
    return worst, where


def state_diffs(
    state: GANState, metrics: dict, ref_state: GANState, ref_losses: tuple[float, float]
) -> tuple[dict[str, float], dict[str, str]]:
    """The largest absolute difference of each quantity between jaxgan and the reference.

    Args:
      state: jaxgan's state after the step.
      metrics: jaxgan's metrics of the step (`g_loss`, `d_loss`).
      ref_state: the reference's state after the step, in flax layout (`convert.from_torch`).
      ref_losses: the reference's `(g_loss, d_loss)`.

    Returns:
      `({quantity: difference}, {quantity: where})` for each of `QUANTITIES`, where naming the
      leaf and index of the largest difference. Step counts that differ (one side stepped a
      network more often) count as an infinite difference of the Adam moments.
    """
    state = jax.device_get(state)
    pairs = {
        "params": ([state.g_params, state.d_params], [ref_state.g_params, ref_state.d_params]),
        "bn_stats": (
            [state.g_batch_stats, state.d_batch_stats],
            [ref_state.g_batch_stats, ref_state.d_batch_stats],
        ),
    }
    adam = [state.g_opt_state[0], state.d_opt_state[0]]
    ref_adam = [ref_state.g_opt_state[0], ref_state.d_opt_state[0]]
    for name in ("mu", "nu"):
        pairs[f"adam_{name}"] = (
            [getattr(a, name) for a in adam],
            [getattr(a, name) for a in ref_adam],
        )
    diffs, where = {}, {}
    losses = (float(metrics["g_loss"]), float(metrics["d_loss"]))
    loss_diffs = [abs(a - b) for a, b in zip(losses, ref_losses, strict=True)]
    diffs["loss"], where["loss"] = max(loss_diffs), ("g_loss", "d_loss")[int(np.argmax(loss_diffs))]
    for q, (a, b) in pairs.items():
        diffs[q], where[q] = _max_abs_diff(a, b)
    if any(int(a.count) != int(r.count) for a, r in zip(adam, ref_adam, strict=True)):
        for q in ("adam_mu", "adam_nu"):
            diffs[q], where[q] = float("inf"), "Adam step counts differ"
    return diffs, where


@contextlib.contextmanager
def fp32_precision(tf32: bool) -> Iterator[str]:
    """Float32 matmuls and convolutions in full IEEE precision on both sides, unless `tf32`.

    Ampere and later GPUs may compute float32 matmuls and convolutions with TF32 inputs (10-bit
    mantissas): cuDNN convolutions in PyTorch do by default, and so does JAX on GPU at its
    default precision. That is a relative error of about 1e-3 per product, far above float32
    rounding, and different on the two sides. CPUs are unaffected. The previous settings are
    restored on exit.

    Args:
      tf32: leave both frameworks' defaults as they are.

    Yields:
      A line describing the settings in force, for the runner's output.
    """
    if tf32:
        yield "TF32 allowed: JAX and PyTorch default float32 precision (--tf32)"
        return
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = "ieee"
    try:
        with jax.default_matmul_precision("highest"):
            yield (
                "TF32 off: JAX default_matmul_precision=highest; PyTorch "
                "cuda.matmul.fp32_precision=ieee, cudnn.conv.fp32_precision=ieee"
            )
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


def jax_device(device: str) -> jax.Device:
    """The JAX device for a PyTorch device name (`"cpu"` or `"cuda"`)."""
    platform = {"cpu": "cpu", "cuda": "gpu"}.get(device)
    if platform is None:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    try:
        return jax.devices(platform)[0]
    except RuntimeError as e:
        raise RuntimeError(f"JAX has no {platform} backend for --device {device}: {e}") from e


def describe_device(device: str) -> str:
    """What each side runs on, by name, for the runner's output."""
    jdev = jax_device(device)
    if device == "cuda":
        return f"cuda: PyTorch {torch.cuda.get_device_name(0)}; JAX {jdev.device_kind} ({jdev})"
    return f"cpu: PyTorch {torch.get_num_threads()} threads; JAX {jdev}"


def _per_step(batches: Batches) -> list:
    return list(zip(*batches, strict=True)) if isinstance(batches, tuple) else list(batches)


def _jax_input(batch, dtype: jnp.dtype):
    if isinstance(batch, tuple):
        x, labels = batch
        return jnp.asarray(x, dtype), jnp.asarray(labels, jnp.int32)
    return jnp.asarray(batch, dtype)


def _torch_input(batch, device: torch.device, dtype: torch.dtype):
    if isinstance(batch, tuple):
        x, labels = batch
        return _torch_input(x, device, dtype), torch.tensor(labels, device=device, dtype=torch.long)
    t = torch.tensor(batch, device=device, dtype=dtype)
    return t.permute(0, 3, 1, 2).contiguous() if t.ndim == 4 else t  # NHWC -> NCHW


def run(strategy: str, model: str, real: Batches, noise: Batches, **options) -> list[Row]:
    """Trains jaxgan and the reference from the same weights on the same inputs.

    Args:
      strategy: jaxgan's strategy, one of `jaxgan.STRATEGIES`.
      model: `"mlp"` or `"dcgan"`.
      real: float32 images `[steps, B, 28, 28, 1]` in `[0, 1]`, one batch per step; for the
        conditional models `(images, labels)` with int labels `[steps, B]`.
      noise: float32 noise `[steps, B, 100]`; for the conditional models `(noise, labels)`,
        the labels G is asked to draw.
      **options: as `run_strategies` takes them, and `reference_strategy`: the reference's
        strategy, `strategy` by default; a different one shows that the check notices when
        semantics differ.

    Returns:
      One `Row` per step.
    """
    reference_strategy = options.pop("reference_strategy", None) or strategy
    return _run([(strategy, reference_strategy)], model, real, noise, **options)[0]


def run_strategies(
    strategies: Sequence[str],
    model: str,
    real: Batches,
    noise: Batches,
    reference_strategies: Sequence[str] | None = None,
    **options,
) -> dict[str, list[Row]]:
    """`run` for several strategies, `{strategy: rows}`, each from the same initial weights.

    jaxgan's steps for all of them are one compiled program (each strategy on its own state),
    which XLA:CPU compiles in about a third of the time the separate steps take; the numbers
    each strategy computes are its own. `reference_strategies`, one per strategy (the same ones
    by default), are what the reference runs beside each.
    """
    references = strategies if reference_strategies is None else reference_strategies
    pairs = list(zip(strategies, references, strict=True))
    rows = _run(pairs, model, real, noise, **options)
    return dict(zip(strategies, rows, strict=True))


def _run(
    pairs: Sequence[tuple[str, str]],
    model: str,
    real: Batches,
    noise: Batches,
    *,
    features: int = 64,
    extra_layers: int = 0,
    num_classes: int | None = None,
    bn_epsilon: float = BN_EPSILON,
    seed: int = 0,
    device: str = "cpu",
    jax_dtype: str = "float64",
    torch_dtype: str = "float64",
    reference_inputs: tuple[Batches, Batches] | None = None,
    reference_epsilon: float | None = None,
) -> list[list[Row]]:
    """`(jaxgan's strategy, the reference's)` pairs trained side by side; rows per pair.

    Args (after `pairs`, `model`, `real` and `noise`, as `run` takes them):
      features: the DCGAN's base width.
      extra_layers: the DCGAN's 3x3 blocks at 7x7 in each network (`jaxgan.make_models`).
      num_classes: `None` for the plain models; the class count of the conditional ones.
      bn_epsilon: every BatchNorm's epsilon, both sides (PyTorch-GAN's MLP runs with 0.8).
      seed: seeds jaxgan's initial float32 weights, which both sides start from.
      device: `"cpu"` or `"cuda"`, for both sides.
      jax_dtype: `"float64"` or `"float32"`, what jaxgan computes in. The float32 weights and
        inputs are converted exactly, so float64 on both sides compares what is computed with
        rounding error out of the way; see `docs/parity.md`.
      torch_dtype: the same for the reference.
      reference_inputs: the reference's `(real, noise)`, jaxgan's by default; different ones
        (labels shuffled, say) likewise show that the check notices.
      reference_epsilon: the reference's BatchNorm epsilon, `bn_epsilon` by default.
    """
    jdtype, tdtype = DTYPES[jax_dtype][0], DTYPES[torch_dtype][1]
    jdev, tdev = jax_device(device), torch.device(device)
    conditional = num_classes is not None
    if isinstance(real, tuple) != conditional or isinstance(noise, tuple) != conditional:
        raise ValueError("real and noise carry labels exactly when num_classes is given")
    ref_real, ref_noise = reference_inputs or (real, noise)
    G, D = jaxgan.make_models(
        model,
        features=features,
        extra_layers=extra_layers,
        num_classes=num_classes,
        bn_epsilon=bn_epsilon,
    )
    layout = {"conditional": conditional, "extra_layers": extra_layers}
    tx = jaxgan.adam()
    with contextlib.ExitStack() as stack:
        stack.enter_context(jax.default_device(jdev))
        # The initial weights are drawn in float32 whatever the dtypes compared, so that every
        # comparison starts from the same values.
        state = jaxgan.create_state(jax.random.key(seed), G, D, tx, tx)
        stack.enter_context(jax.enable_x64(jax_dtype == "float64"))
        state = jax.tree.map(lambda x: x.astype(jdtype) if x.dtype.kind == "f" else x, state)
        ref_epsilon = bn_epsilon if reference_epsilon is None else reference_epsilon
        references = []
        for _, ref_strategy in pairs:
            ref_models = reference.make_models(
                model, features, num_classes, ref_epsilon, extra_layers
            )
            tG, tD = (m.to(tdev, tdtype) for m in ref_models)
            oG, oD = reference.make_optimizer(tG), reference.make_optimizer(tD)
            convert.load_into_torch(model, state, tG, tD, oG, oD, **layout)
            references.append((reference.STRATEGIES[ref_strategy], tG, tD, oG, oD))
        steps = [jaxgan.make_train_step(strategy, G, D, tx, tx) for strategy, _ in pairs]
        step_all = jax.jit(
            lambda states, x, z: [step(s, x, z) for step, s in zip(steps, states, strict=True)],
            donate_argnums=0,
        )
        states = [jax.tree.map(jnp.copy, state) for _ in pairs]  # each donated on its own

        rows = [[] for _ in pairs]
        inputs = zip(*map(_per_step, (real, noise, ref_real, ref_noise)), strict=True)
        for i, (x, z, ref_x, ref_z) in enumerate(inputs):
            results = step_all(states, _jax_input(x, jdtype), _jax_input(z, jdtype))
            states = [new_state for new_state, _ in results]
            # One copy for every pair: the reference strategies only read their inputs.
            ref_inputs = _torch_input(ref_x, tdev, tdtype), _torch_input(ref_z, tdev, tdtype)
            for (strategy, _), (new_state, metrics), (ref_step, tG, tD, oG, oD), out in zip(
                pairs, results, references, rows, strict=True
            ):
                g_loss, d_loss = ref_step(tG, tD, oG, oD, *ref_inputs)
                ref_state = convert.from_torch(model, tG, tD, oG, oD, i + 1, **layout)
                losses = g_loss.item(), d_loss.item()
                diffs, where = state_diffs(new_state, metrics, ref_state, losses)
                out.append(Row(strategy, model, i + 1, diffs, where))
    return rows


def method_2_as_written(
    model: str, features: int = 64, device: str = "cpu", num_classes: int | None = None
) -> str:
    """Runs the notes' method 2 literally on the reference and returns what PyTorch says.

    Args:
      model: `"mlp"` or `"dcgan"`.
      features: the DCGAN's base width.
      device: `"cpu"` or `"cuda"`.
      num_classes: `None` for the plain models; the class count of the conditional ones.

    Returns:
      The `RuntimeError`'s message without PyTorch's hint (the in-place modification error), or
      a line saying that it ran, which on PyTorch >= 1.5 does not happen.
    """
    torch.manual_seed(0)
    G, D = (m.to(device) for m in reference.make_models(model, features, num_classes))
    real = torch.rand(4, 1, 28, 28, device=device)
    noise = torch.randn(4, reference.LATENT_DIM, device=device)
    if num_classes is not None:
        real = real, torch.randint(num_classes, (4,), device=device)
        noise = noise, torch.randint(num_classes, (4,), device=device)
    optimizers = reference.make_optimizer(G), reference.make_optimizer(D)
    try:
        reference.shared_sequential_as_written(G, D, *optimizers, real, noise)
    except RuntimeError as e:
        return f"RuntimeError: {str(e).split(' Hint:')[0]}"
    return "ran without error (expected the in-place modification RuntimeError)"


def mnist_batches(
    images: np.ndarray,
    steps: int,
    batch_size: int,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> tuple[Batches, Batches]:
    """Consecutive real batches and standard normal noise, both float32, for `steps` steps.

    Args:
      images: `uint8[N, 28, 28, 1]` MNIST images, `N >= steps * batch_size`.
      steps: number of training steps.
      batch_size: examples per step.
      seed: seeds the noise, and G's labels.
      labels: the images' `int[N]` labels, for the conditional models; `None` for plain batches.

    Returns:
      `(real [steps, B, 28, 28, 1] in [0, 1], noise [steps, B, 100])`; with `labels`,
      `((real, real labels [steps, B]), (noise, G's labels [steps, B]))`, G's labels drawn
      uniformly from the `NUM_CLASSES` classes after the noise (which is the plain run's).
    """
    n = steps * batch_size
    if len(images) < n:
        raise ValueError(f"{steps} steps of {batch_size} need {n} images, got {len(images)}")
    real = to_float(images[:n]).reshape(steps, batch_size, *images.shape[1:])
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((steps, batch_size, reference.LATENT_DIM), np.float32)
    if labels is None:
        return real, noise
    real_labels = np.asarray(labels[:n], np.int32).reshape(steps, batch_size)
    gen_labels = rng.integers(0, NUM_CLASSES, (steps, batch_size), np.int32)
    return (real, real_labels), (noise, gen_labels)


def summarize(rows: Sequence[Row], key: Callable[[Row], tuple] = lambda r: (r.strategy, r.model)):
    """`{key: {quantity: max over the rows}}`, in first-seen order."""
    out: dict[tuple, dict[str, float]] = {}
    for row in rows:
        worst = out.setdefault(key(row), dict.fromkeys(QUANTITIES, 0.0))
        for q in QUANTITIES:
            worst[q] = max(worst[q], row.diffs[q])
    return out
