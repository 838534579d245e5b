"""Probes of what holds the DCGAN's sample quality back (docs/dcgan.md).

    python -m experiments.dcgan_probes continue runs/recipes/dcgan1/w32/seed0 --step 14055 \\
        --epochs 5 --lr constant --data-dir ../shared/data/mnist --out runs/probes/const.jsonl
    python -m experiments.dcgan_probes widths --g-features 64 --d-features 32 --epochs 10 \\
        --data-dir ../shared/data/mnist --out runs/probes/g64d32.jsonl

`continue` trains a run on from one of its checkpoints with Adam's learning rate held
(`constant`, what the run would have done) or decayed linearly to zero over the added epochs
(`linear_decay`; Adam's moments carry over). `widths` trains the published DCGAN recipe
([-1, 1] and tanh, Adam(2e-4, 0.5), `two_pass`, seed 0) from scratch with the generator's and
the discriminator's base widths set apart, which `TrainConfig` does not offer, with
`--no-d-batchnorm` a discriminator without its BatchNorm, and with `--r1 GAMMA` (which needs
`--no-d-batchnorm`) the R1 gradient penalty on D (Mescheder et al., 2018): D's loss gains
`GAMMA / 2 * mean_i |grad_x D(x_i)|^2` over the real batch; `--g-extra-layers N` and
`--d-extra-layers N` add N 3x3 blocks at 7x7 to either network (what `make_models`'
`extra_layers` adds to both), and
`--ema DECAY` also scores the exponential moving average of G's weights. Both run the
training loop's hot path (`HotLoop`, the run's data order and noise) and after every epoch
score the same 5,000 samples (noise from key 123, generator in evaluation mode) with the MNIST
classifier: the classifier score, the classes covered, the Fréchet distance of the classifier's
features to the first 5,000 test images, the mean entropy of the classifier's answer per
sample, the share of samples whose top class is under 0.9 (`unsure`) and the share of those
whose top two classes hold 95% (`unsure_two_classes`: between two digits). One JSON line per
epoch goes to `--out` and to stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan import make_train_step
from jaxgan.eval import metrics
from jaxgan.eval.classifier import load_classifier
from jaxgan.layers import DownConv, SameConv, dcgan_kernel_init
from jaxgan.losses import get_loss
from jaxgan.models import OUTPUTS, DCGANDiscriminator, DCGANGenerator, to_unit_range
from jaxgan.sampling import generate
from jaxgan.state import GANState
from jaxgan.strategies import Nets, StepFn
from jaxgan.training import Dataset, TrainConfig, load_idx_split, load_run
from jaxgan.training.distributed import DataParallel
from jaxgan.training.run import HotLoop, Run, run_keys

PROBE_SAMPLES = 5000
PROBE_NOISE_SEED = 123


class DiscriminatorWithoutBatchNorm(nn.Module):
    """The DCGAN's discriminator without its BatchNorms (as the discriminators of WGAN-GP and
    SNGAN go without): `28x28x1 -> 14x14xf -> 7x7x2f -> extra_layers x 7x7x2f -> 1`."""

    features: int
    extra_layers: int = 0

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = True) -> jax.Array:
        x = nn.leaky_relu(DownConv(self.features)(images), 0.2)
        x = nn.leaky_relu(DownConv(2 * self.features)(x), 0.2)
        for _ in range(self.extra_layers):
            x = nn.leaky_relu(SameConv(2 * self.features)(x), 0.2)
        dense = nn.Dense(1, use_bias=False, kernel_init=dcgan_kernel_init)
        return dense(x.reshape(x.shape[0], -1))[:, 0]


def two_pass_r1(nets: Nets, gamma: float) -> StepFn:
    """`two_pass` (jaxgan.strategies) with the R1 penalty added to D's loss:

    D_{t+1} = D_t - η ∇_D [d_loss(G_{t+1}, D_t) + γ/2 mean_i |∇_x D_t(x_i)|²]

    Per-sample input gradients need a discriminator without BatchNorm (each logit a function
    of its own image alone), so D's batch statistics are empty and stay so.
    """

    def step(state, real, noise):
        def g_loss_fn(g_params):
            fakes, g_stats = nets.G(g_params, state.g_batch_stats, noise)
            return nets.loss(nets.D(state.d_params, {}, fakes)[0], 1.0), g_stats

        (g_loss, g_stats), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)
        g_params, g_opt_state = nets.update_g(state.g_params, state.g_opt_state, g_grads)
        fakes, g_stats = nets.G(g_params, g_stats, noise)

        def d_loss_fn(d_params):
            d_fake = nets.D(d_params, {}, fakes)[0]
            d_real, pullback = jax.vjp(lambda x: nets.D(d_params, {}, x)[0], real)
            (input_grads,) = pullback(jnp.ones_like(d_real))
            penalty = 0.5 * gamma * jnp.square(input_grads).sum((1, 2, 3)).mean()
            d_loss = nets.loss(d_fake, 0.0) + nets.loss(d_real, 1.0)
            return d_loss + penalty, (d_loss, d_real, d_fake)

        (_, (d_loss, d_real, d_fake)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            state.d_params
        )
        d_params, d_opt_state = nets.update_d(state.d_params, state.d_opt_state, d_grads)
        new_state = state.replace(
            step=state.step + 1, g_params=g_params, d_params=d_params, g_batch_stats=g_stats,
            g_opt_state=g_opt_state, d_opt_state=d_opt_state,
        )  # fmt: skip
        return new_state, {
            "g_loss": g_loss,
            "d_loss": d_loss,
            "d_real": jax.nn.sigmoid(d_real).mean(),
            "d_fake": jax.nn.sigmoid(d_fake).mean(),
        }

    return step


class EpochScorer:
    """Scores a run's generator on fixed noise against the first test images."""

    def __init__(self, generator, latent_dim: int, pixel_range: str, data_dir: str):
        self.classifier = load_classifier("mnist")
        self.noise = jax.random.normal(
            jax.random.key(PROBE_NOISE_SEED), (PROBE_SAMPLES, latent_dim)
        )
        self.pixel_range = pixel_range
        self.generate = jax.jit(lambda state, z: generate(generator, state, z))
        test = load_idx_split(data_dir, "test").images[:PROBE_SAMPLES]
        self.real_features, _ = metrics.features(test.astype(np.float32) / 255, self.classifier)

    def __call__(self, state: GANState) -> dict[str, float]:
        images = to_unit_range(self.generate(state, self.noise), self.pixel_range)
        features, probs = metrics.features(np.clip(np.asarray(images), 0, 1), self.classifier)
        entropy = -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1)
        top2 = np.sort(probs, axis=1)[:, -2:]
        unsure = top2[:, 1] < 0.9
        return {
            "score": metrics.classifier_score(probs)[0],
            "classes": int(metrics.class_coverage(probs).num_covered),
            "fd": metrics.frechet_distance(features, self.real_features),
            "sample_entropy": float(entropy.mean()),
            # Samples the classifier is unsure of (top class under 0.9), and the share of
            # those whose top two classes hold 95% of the probability: between two digits.
            "unsure": float(unsure.mean()),
            "unsure_two_classes": float((top2.sum(1)[unsure] > 0.95).mean()),
        }


@jax.jit
def _ema_update(average, current, weight):
    return jax.tree.map(lambda a, c: weight * a + (1 - weight) * c, average, current)


def train_epochs(run: Run, state: GANState, first: int, epochs: int, dataset: Dataset,
                 scorer: EpochScorer, out: Path, tags: dict,
                 ema: float | None = None) -> None:  # fmt: skip
    """Epochs `first + 1 .. first + epochs` of `run` from `state`, scored after each; with
    `ema`, also the exponential moving average of G's parameters and BatchNorm statistics
    (decay `ema` per step, folded in after every dispatch of `log_every` steps)."""
    hot = HotLoop(run, DataParallel.create(None), run_keys(run.config.seed), dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    if ema is not None:  # the state itself is donated to the next dispatch
        average = jax.tree.map(jnp.copy, (state.g_params, state.g_batch_stats))
    for epoch in range(first, first + epochs):
        order, position, started = hot.order(epoch), 0, time.perf_counter()
        while position < hot.steps_per_epoch:
            length = min(run.config.log_every, hot.steps_per_epoch - position)
            state, _ = hot.dispatch(state, order, position, length)
            if ema is not None:
                current = (state.g_params, state.g_batch_stats)
                average = _ema_update(average, current, ema**length)
            position += length
        jax.block_until_ready(state)
        seconds = round(time.perf_counter() - started)
        record = {**tags, "epoch": epoch + 1, "seconds": seconds, **scorer(state)}
        if ema is not None:
            averaged = state.replace(g_params=average[0], g_batch_stats=average[1])
            record.update({f"ema_{k}": v for k, v in scorer(averaged).items()})
        print(json.dumps(record), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")


def probe_continue(args: argparse.Namespace) -> None:
    config, saved, state = load_run(args.run_dir, args.step)
    dataset = load_idx_split(args.data_dir, "train")
    steps_per_epoch = config.steps_per_epoch(len(dataset))
    first = int(state.step) // steps_per_epoch
    if args.lr == "linear_decay":
        g_tx, d_tx = (
            optax.adam(optax.linear_schedule(lr, 0.0, args.epochs * steps_per_epoch),
                       config.beta1, config.beta2)
            for lr in (config.g_lr, config.d_lr)
        )  # fmt: skip
        # optax.adam(schedule) keeps Adam's state and adds a step count for the schedule.
        state = state.replace(
            g_opt_state=(state.g_opt_state[0], g_tx.init(state.g_params)[1]),
            d_opt_state=(state.d_opt_state[0], d_tx.init(state.d_params)[1]),
        )
    else:
        g_tx, d_tx = Run.optimizers(config)
    G, D = saved.generator, saved.discriminator
    run = Run(config, G, D, make_train_step(config.strategy, G, D, g_tx, d_tx, loss=config.loss))
    scorer = EpochScorer(G, config.latent_dim, config.pixel_range, args.data_dir)
    tags = {"lr": args.lr}
    record = {**tags, "epoch": first, **scorer(state)}
    print(json.dumps(record), flush=True)
    train_epochs(run, state, first, args.epochs, dataset, scorer, args.out, tags)


def probe_widths(args: argparse.Namespace) -> None:
    config = TrainConfig(model="dcgan", pixel_range="symmetric", g_lr=2e-4, d_lr=2e-4)
    output = OUTPUTS[config.pixel_range]
    G = DCGANGenerator(features=args.g_features, output=output, extra_layers=args.g_extra_layers)
    if args.d_batchnorm:
        D = DCGANDiscriminator(features=args.d_features, extra_layers=args.d_extra_layers)
    else:
        D = DiscriminatorWithoutBatchNorm(args.d_features, args.d_extra_layers)
    g_tx, d_tx = Run.optimizers(config)
    if args.r1 is None:
        step = make_train_step(config.strategy, G, D, g_tx, d_tx, loss=config.loss)
    else:
        step = two_pass_r1(Nets(G, D, g_tx, d_tx, get_loss(config.loss)), args.r1)
    run = Run(config, G, D, step)
    state = run.init_state(run_keys(config.seed)["init"])
    scorer = EpochScorer(G, config.latent_dim, config.pixel_range, args.data_dir)
    tags = {"g_features": args.g_features, "d_features": args.d_features}
    if not args.d_batchnorm:
        tags["d_batchnorm"] = False
    if args.r1 is not None:
        tags["r1"] = args.r1
    dataset = load_idx_split(args.data_dir, "train")
    if args.ema is not None:
        tags["ema"] = args.ema
    for extra in ("g_extra_layers", "d_extra_layers"):
        if getattr(args, extra):
            tags[extra] = getattr(args, extra)
    train_epochs(run, state, 0, args.epochs, dataset, scorer, args.out, tags, args.ema)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m experiments.dcgan_probes",
                                description=__doc__.splitlines()[0])  # fmt: skip
    probes = p.add_subparsers(dest="probe", required=True)
    cont = probes.add_parser("continue", help="train a run on from a checkpoint")
    cont.add_argument("run_dir", type=Path)
    cont.add_argument("--step", type=int, required=True)
    cont.add_argument("--lr", choices=("constant", "linear_decay"), required=True)
    widths = probes.add_parser("widths", help="G's and D's widths set apart, from scratch")
    widths.add_argument("--g-features", type=int, required=True)
    widths.add_argument("--d-features", type=int, required=True)
    widths.add_argument("--no-d-batchnorm", dest="d_batchnorm", action="store_false")
    widths.add_argument("--r1", type=float, default=None, help="R1 penalty weight (gamma)")
    widths.add_argument("--g-extra-layers", type=int, default=0, help="G's 3x3 blocks at 7x7")
    widths.add_argument("--d-extra-layers", type=int, default=0, help="D's 3x3 blocks at 7x7")
    widths.add_argument(
        "--ema",
        type=float,
        default=None,
        help="also score the moving average of G with this decay per step",
    )
    for probe in (cont, widths):
        probe.add_argument("--epochs", type=int, required=True)
        probe.add_argument("--data-dir", required=True)
        probe.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.probe == "widths" and args.r1 is not None and args.d_batchnorm:
        p.error("--r1 needs --no-d-batchnorm (per-sample input gradients)")
    (probe_continue if args.probe == "continue" else probe_widths)(args)


if __name__ == "__main__":
    main()
