"""The five ways to train G and D together, each a pure `step(state, real, noise)`.

Notation: `z` is the batch of noise, `x` the batch of real images, `s = D(.)` logits, and

    g_loss(G, D) = bce(D(G(z)), 1)
    d_loss(G, D) = bce(D(G(z)), 0) + bce(D(x), 1)

PyTorch accumulates gradients into `.grad` and frees a graph after `backward()` unless told to
retain it, so which gradient each network receives depends on where `zero_grad()`, `backward()`
and `step()` sit. In JAX each choice is an explicit derivative of an explicit function:

| strategy            | G receives                       | D receives                        |
|---------------------|----------------------------------|-----------------------------------|
| `two_pass`          | ∇_G g_loss(G_t, D_t)             | ∇_D d_loss(G_{t+1}, D_t)          |
| `shared_joint`      | ∇_G (g_loss + d_loss)(G_t, D_t)  | ∇_D (g_loss + d_loss)(G_t, D_t)   |
| `shared_sequential` | ∇_G g_loss(G_t, D_t)             | ∇_D d_loss(G_t, D_t)              |
| `shared_accumulate` | ∇_G g_loss(G_t, D_t)             | ∇_D (g_loss + d_loss)(G_t, D_t)   |
| `d_first`           | ∇_G bce(D_{t+1}(G_t(z)), 1)      | ∇_D d_loss(G_t, D_t)              |

"One forward pass, two backward passes" (`backward(retain_graph=True)`) is one `jax.vjp` whose
pullback is called twice, once per loss; `.detach()` is a value that is not differentiated.
Each pullback is asked only for what an update uses; under `jax.jit`, XLA removes the work
behind outputs that are dropped (for example ∇_D g_loss in `shared_sequential`).

Class-conditional models need nothing else: `real` is `(images, labels)`, `noise` is
`(z, labels)`, and G's fakes carry their labels to D (see `Nets`).

BatchNorm running statistics advance once per network call, in the order the PyTorch code
calls the networks: the generator's twice per step in `two_pass` and once elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxgan.choices import STRATEGY_NAMES
from jaxgan.losses import LossFn, get_loss
from jaxgan.state import BatchStats, GANState, Params

Metrics = dict[str, jax.Array]
# Images, or (images, int labels) for class-conditional models; noise likewise z or (z, labels).
Batch = jax.Array | tuple[jax.Array, jax.Array]
StepFn = Callable[[GANState, Batch, Batch], tuple[GANState, Metrics]]


@dataclasses.dataclass(frozen=True)
class Nets:
    """The static half of a train step: how to run, score and update each network."""

    generator: nn.Module
    discriminator: nn.Module
    g_optimizer: optax.GradientTransformation
    d_optimizer: optax.GradientTransformation
    loss: LossFn

    def G(self, params: Params, stats: BatchStats, noise: Batch):
        """`G(noise)` in training mode -> (fakes, updated batch stats).

        For a conditional generator `noise` is `(z, labels)` and the fakes are
        `(images, labels)`: the labels travel with the images to D.
        """
        if isinstance(noise, tuple):
            z, labels = noise
            images, stats = _apply(self.generator, params, stats, z, labels)
            return (images, labels), stats
        return _apply(self.generator, params, stats, noise)

    def D(self, params: Params, stats: BatchStats, examples: Batch):
        """`D(examples)` in training mode -> (logits, updated batch stats).

        `examples` are images, or `(images, labels)` for a conditional discriminator.
        """
        inputs = examples if isinstance(examples, tuple) else (examples,)
        return _apply(self.discriminator, params, stats, *inputs)

    def update_g(self, params: Params, opt_state: optax.OptState, grads: Params):
        """`optimizer_G.step()` -> (new params, new optimizer state)."""
        updates, opt_state = self.g_optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def update_d(self, params: Params, opt_state: optax.OptState, grads: Params):
        """`optimizer_D.step()` -> (new params, new optimizer state)."""
        updates, opt_state = self.d_optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state


def _apply(module: nn.Module, params: Params, stats: BatchStats, *inputs: jax.Array):
    out, mutated = module.apply(
        {"params": params, "batch_stats": stats}, *inputs, train=True, mutable=["batch_stats"]
    )
    return out, mutated.get("batch_stats", {})


def _metrics(g_loss, d_loss, d_real_logits, d_fake_logits) -> Metrics:
    return {
        "g_loss": g_loss,
        "d_loss": d_loss,
        "d_real": jax.nn.sigmoid(d_real_logits).mean(),  # D(x) on the batch D trained on
        "d_fake": jax.nn.sigmoid(d_fake_logits).mean(),  # D(G(z)) on the batch D trained on
    }


def _advance(state: GANState, g_params, g_opt_state, g_stats, d_params, d_opt_state, d_stats):
    return state.replace(
        step=state.step + 1,
        g_params=g_params,
        d_params=d_params,
        g_batch_stats=g_stats,
        d_batch_stats=d_stats,
        g_opt_state=g_opt_state,
        d_opt_state=d_opt_state,
    )


def two_pass(nets: Nets) -> StepFn:
    """Notes §2: G trains on its own forward pass, then D on a second one through G_{t+1}.

    G_{t+1} = G_t - η ∇_G g_loss(G_t, D_t)
    D_{t+1} = D_t - η ∇_D d_loss(G_{t+1}, D_t)      (the same z, through the updated G)

    Alternating descent with G first. PyTorch::

        gen_imgs = G(noise); g_loss = bce(D(gen_imgs), real_label)
        optimizer_G.zero_grad(); g_loss.backward(); optimizer_G.step()
        gen_imgs = G(noise)
        d_loss = bce(D(gen_imgs), fake_label) + bce(D(real_imgs), real_label)
        optimizer_D.zero_grad(); d_loss.backward(); optimizer_D.step()

    `d_loss.backward()` also fills G's `.grad`, which the next `optimizer_G.zero_grad()`
    discards; here the second pass of G is not differentiated at all.
    """

    def step(state: GANState, real: Batch, noise: Batch) -> tuple[GANState, Metrics]:
        def g_loss_fn(g_params):
            gen_imgs, g_stats = nets.G(g_params, state.g_batch_stats, noise)
            d_fake, d_stats = nets.D(state.d_params, state.d_batch_stats, gen_imgs)
            return nets.loss(d_fake, 1.0), (g_stats, d_stats)

        (g_loss, (g_stats, d_stats)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            state.g_params
        )
        g_params, g_opt_state = nets.update_g(state.g_params, state.g_opt_state, g_grads)

        gen_imgs, g_stats = nets.G(g_params, g_stats, noise)

        def d_loss_fn(d_params):
            d_fake, stats = nets.D(d_params, d_stats, gen_imgs)
            d_real, stats = nets.D(d_params, stats, real)
            return nets.loss(d_fake, 0.0) + nets.loss(d_real, 1.0), (stats, d_real, d_fake)

        (d_loss, (d_stats, d_real, d_fake)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            state.d_params
        )
        d_params, d_opt_state = nets.update_d(state.d_params, state.d_opt_state, d_grads)

        new_state = _advance(state, g_params, g_opt_state, g_stats, d_params, d_opt_state, d_stats)
        return new_state, _metrics(g_loss, d_loss, d_real, d_fake)

    return step


def _shared_forward(nets: Nets, state: GANState, real: Batch, noise: Batch):
    """`gen_imgs = G(noise); d_fake = D(gen_imgs); d_real = D(real_imgs)`, kept for backward.

    Returns the losses `(g_loss, d_loss)`, their pullback with respect to `(G, D)` (the retained
    graph: call it once per `backward()`), and the auxiliary outputs.
    """

    def losses(g_params, d_params):
        gen_imgs, g_stats = nets.G(g_params, state.g_batch_stats, noise)
        d_fake, d_stats = nets.D(d_params, state.d_batch_stats, gen_imgs)
        d_real, d_stats = nets.D(d_params, d_stats, real)
        g_loss = nets.loss(d_fake, 1.0)
        d_loss = nets.loss(d_fake, 0.0) + nets.loss(d_real, 1.0)
        return (g_loss, d_loss), (g_stats, d_stats, d_real, d_fake)

    return jax.vjp(losses, state.g_params, state.d_params, has_aux=True)


def _cotangent(losses: tuple[jax.Array, jax.Array], g_loss_seed: float, d_loss_seed: float):
    """Seeds for one pullback: `(a, b)` pulls back `a * g_loss + b * d_loss`."""
    g_loss, d_loss = losses
    return jnp.full_like(g_loss, g_loss_seed), jnp.full_like(d_loss, d_loss_seed)


def _shared_step(nets: Nets, state: GANState, losses, aux, g_grads, d_grads):
    g_stats, d_stats, d_real, d_fake = aux
    g_params, g_opt_state = nets.update_g(state.g_params, state.g_opt_state, g_grads)
    d_params, d_opt_state = nets.update_d(state.d_params, state.d_opt_state, d_grads)
    new_state = _advance(state, g_params, g_opt_state, g_stats, d_params, d_opt_state, d_stats)
    return new_state, _metrics(*losses, d_real, d_fake)


def shared_joint(nets: Nets) -> StepFn:
    """The notes' method 1: one forward pass; both networks step on ∇(g_loss + d_loss).

    G_{t+1} = G_t - η ∇_G (g_loss + d_loss)(G_t, D_t)
    D_{t+1} = D_t - η ∇_D (g_loss + d_loss)(G_t, D_t)

    PyTorch::

        optimizer_G.zero_grad(); optimizer_D.zero_grad()
        g_loss.backward(retain_graph=True); d_loss.backward()
        optimizer_G.step(); optimizer_D.step()

    Both `backward()` calls accumulate into every parameter's `.grad`. On a fake logit `s` the
    summed loss is `-log σ(s) - log(1 - σ(s))`, minimised at `σ(s) = 1/2`, with gradient
    `(2σ(s) - 1) / B`: both networks are pushed to make D answer one half on fakes. That is
    cooperation, not a game, which is why the notes saw no adversarial training. The two
    accumulated pullbacks are one pullback at cotangent `(1, 1)` (a pullback is linear).
    """

    def step(state: GANState, real: Batch, noise: Batch) -> tuple[GANState, Metrics]:
        losses, backward, aux = _shared_forward(nets, state, real, noise)
        g_grads, d_grads = backward(_cotangent(losses, 1.0, 1.0))
        return _shared_step(nets, state, losses, aux, g_grads, d_grads)

    return step


def shared_sequential(nets: Nets) -> StepFn:
    """The notes' method 2 as written: one forward pass; G on g_loss, then D on d_loss alone.

    G_{t+1} = G_t - η ∇_G g_loss(G_t, D_t)
    D_{t+1} = D_t - η ∇_D d_loss(G_t, D_t)          (fakes from G_t: simultaneous descent)

    PyTorch, as the notes write it::

        optimizer_G.zero_grad(); g_loss.backward(retain_graph=True); optimizer_G.step()
        optimizer_D.zero_grad(); d_loss.backward(); optimizer_D.step()

    `optimizer_D.zero_grad()` runs after `g_loss.backward()`, so it wipes the ∇_D g_loss that the
    notes believe is "added on top": D steps on ∇_D d_loss alone. On PyTorch >= 1.5 that code
    raises "modified by an inplace operation", because `optimizer_G.step()` changed weights that
    `d_loss.backward()` still needs; the same update comes from PyTorch-GAN's `gan.py` (D on
    `gen_imgs.detach()`), or from running both `backward()` calls before either `step()`.
    """

    def step(state: GANState, real: Batch, noise: Batch) -> tuple[GANState, Metrics]:
        losses, backward, aux = _shared_forward(nets, state, real, noise)
        g_grads, _ = backward(_cotangent(losses, 1.0, 0.0))  # g_loss.backward(retain_graph=True)
        _, d_grads = backward(_cotangent(losses, 0.0, 1.0))  # D zeroed, then d_loss.backward()
        return _shared_step(nets, state, losses, aux, g_grads, d_grads)

    return step


def shared_accumulate(nets: Nets) -> StepFn:
    """The notes' method 2 as they describe it: D's update adds ∇_D g_loss to ∇_D d_loss.

    G_{t+1} = G_t - η ∇_G g_loss(G_t, D_t)
    D_{t+1} = D_t - η ∇_D (g_loss + d_loss)(G_t, D_t)

    PyTorch (D's `.grad` is zeroed before `g_loss.backward`, not after; both backward passes
    run before either step, which also avoids the in-place error)::

        optimizer_G.zero_grad(); optimizer_D.zero_grad()
        g_loss.backward(retain_graph=True)   # G's .grad, and ∇_D g_loss into D's .grad
        d_loss.backward(inputs=list(D.parameters()))   # adds ∇_D d_loss
        optimizer_G.step(); optimizer_D.step()

    This is what the notes mean by "D's gradient is g_loss's plus d_loss's; not a second
    derivative". ∇_D g_loss pushes D towards calling fakes real, against ∇_D d_loss; on a fake
    logit the two sum to `(2σ(s) - 1) / B`, as in `shared_joint`. D's accumulated `.grad` is one
    pullback at cotangent `(1, 1)`.
    """

    def step(state: GANState, real: Batch, noise: Batch) -> tuple[GANState, Metrics]:
        losses, backward, aux = _shared_forward(nets, state, real, noise)
        g_grads, _ = backward(_cotangent(losses, 1.0, 0.0))  # g_loss.backward(retain_graph=True)
        _, d_grads = backward(_cotangent(losses, 1.0, 1.0))  # D's .grad: g_loss's + d_loss's
        return _shared_step(nets, state, losses, aux, g_grads, d_grads)

    return step


def d_first(nets: Nets) -> StepFn:
    """The PyTorch DCGAN example's order: D steps first, then G through the updated D.

    D_{t+1} = D_t - η ∇_D d_loss(G_t, D_t)
    G_{t+1} = G_t - η ∇_G bce(D_{t+1}(G_t(z)), 1)

    Alternating descent with D first; G's forward pass is shared, D runs again after its step.
    PyTorch (`examples/dcgan/main.py`)::

        netD.zero_grad()
        errD_real = criterion(netD(real), real_label); errD_real.backward()
        fake = netG(noise)
        errD_fake = criterion(netD(fake.detach()), fake_label); errD_fake.backward()
        optimizerD.step()
        netG.zero_grad()
        errG = criterion(netD(fake), real_label); errG.backward()
        optimizerG.step()

    The reported `g_loss` is `errG` (through D_{t+1}); `d_loss` is `errD_real + errD_fake`.
    """

    def step(state: GANState, real: Batch, noise: Batch) -> tuple[GANState, Metrics]:
        fake, g_backward, g_stats = jax.vjp(
            lambda g_params: nets.G(g_params, state.g_batch_stats, noise),
            state.g_params,
            has_aux=True,
        )

        def d_loss_fn(d_params):  # `fake` is a constant here: fake.detach()
            d_real, stats = nets.D(d_params, state.d_batch_stats, real)
            d_fake, stats = nets.D(d_params, stats, fake)
            return nets.loss(d_real, 1.0) + nets.loss(d_fake, 0.0), (stats, d_real, d_fake)

        (d_loss, (d_stats, d_real, d_fake)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            state.d_params
        )
        d_params, d_opt_state = nets.update_d(state.d_params, state.d_opt_state, d_grads)

        def g_loss_fn(fake):
            output, stats = nets.D(d_params, d_stats, fake)
            return nets.loss(output, 1.0), stats

        # allow_int: a conditional fake carries integer labels, which get no gradient.
        (g_loss, d_stats), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True, allow_int=True)(
            fake
        )
        (g_grads,) = g_backward(fake_grad)
        g_params, g_opt_state = nets.update_g(state.g_params, state.g_opt_state, g_grads)

        new_state = _advance(state, g_params, g_opt_state, g_stats, d_params, d_opt_state, d_stats)
        return new_state, _metrics(g_loss, d_loss, d_real, d_fake)

    return step


STRATEGIES: dict[str, Callable[[Nets], StepFn]] = dict(
    zip(
        STRATEGY_NAMES,
        (two_pass, shared_joint, shared_sequential, shared_accumulate, d_first),
        strict=True,
    )
)


def make_train_step(
    strategy: str,
    generator: nn.Module,
    discriminator: nn.Module,
    g_optimizer: optax.GradientTransformation,
    d_optimizer: optax.GradientTransformation,
    *,
    loss: str = "bce",
) -> StepFn:
    """Builds the pure train step of a strategy.

    Args:
      strategy: one of `STRATEGIES` (see the module docstring for the gradients of each).
      generator: module called as `generator(z, train=True)`, or `generator(z, labels, ...)`
        when it is conditional (then `noise` is `(z, labels)`).
      discriminator: module called as `discriminator(images, train=True)` (or with labels;
        then `real` is `(images, labels)`), returning logits.
      g_optimizer: the generator's optimizer; the same one `create_state` was given.
      d_optimizer: the discriminator's optimizer.
      loss: `"bce"` (sigmoid + PyTorch's `BCELoss`, exactly) or `"bce_logits"` (stable).

    Returns:
      `step(state, real, noise) -> (state, metrics)`, pure and not yet jitted: jit it at the
      call site with the state donated, `jax.jit(step, donate_argnums=0)`. `metrics` holds
      scalars `g_loss`, `d_loss`, `d_real` and `d_fake` (mean D probabilities).

    Example::

        G, D = jaxgan.make_models("mlp")
        tx = jaxgan.adam()
        state = jaxgan.create_state(jax.random.key(0), G, D, tx, tx)
        step = jax.jit(jaxgan.make_train_step("two_pass", G, D, tx, tx), donate_argnums=0)
        state, metrics = step(state, real, noise)
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}")
    nets = Nets(generator, discriminator, g_optimizer, d_optimizer, get_loss(loss))
    return STRATEGIES[strategy](nets)
