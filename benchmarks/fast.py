"""The five strategies as a careful PyTorch user would write them: same updates, no waste.

`parity.reference` is the notes' code, literally: `zero_grad()`, `backward()` and `step()` in
the notes' order, with gradients that the update then throws away (∇_G d_loss in `two_pass`,
∇_D g_loss in `shared_sequential`, ...). This module computes exactly the same update
(`tests/test_fast.py` checks it step for step in float64) with only the work it needs:

- `loss.backward(inputs=params)` asks for one network's gradient, so autograd runs only the
  backward nodes on the way to those parameters: no weight gradients of the other network.
  `zero_grad(set_to_none=True)` before it lets autograd hand its result over as `.grad`
  without adding it to zeros. (Not `torch.autograd.grad` assigned to `.grad`: its results keep
  whatever strides autograd produced, channels-last for convolutions on an NHWC-permuted batch,
  and fused Adam reads `.grad` as if laid out like the parameter, silently updating wrong
  entries; `backward` lays `.grad` out like its parameter.)
- A forward pass whose gradient no update uses runs under `torch.no_grad()` (G's second pass
  in `two_pass`), or on `fake.detach()` (D's pass on fakes in `d_first`), and records no graph.
- `torch.optim.Adam(..., fused=True)`: one kernel for all parameters (CPU and CUDA).
- Each network is called as often and in the same order as in the reference, so BatchNorm's
  running statistics advance identically.

The strategies take and return what `parity.reference.STRATEGIES` do, plain or class-conditional
batches (`(images, labels)`, `(z, gen_labels)`) alike; `torch.compile` may wrap the modules
(`benchmarks.bench_torch`), which changes no arithmetic the test relies on.
"""

from __future__ import annotations

import torch
from torch import nn

from parity.reference import Strategy, bce, split_labels


def make_optimizer(module: nn.Module) -> torch.optim.Adam:
    """`Adam(lr=2e-4, betas=(0.5, 0.999))` as `reference.make_optimizer`, fused into one kernel."""
    return torch.optim.Adam(module.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return optimizer.param_groups[0]["params"]


def _backward(loss: torch.Tensor, *optimizers: torch.optim.Optimizer, retain: bool = False):
    """`loss`'s gradient with respect to the optimizers' parameters only, into fresh `.grad`s."""
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    inputs = [p for optimizer in optimizers for p in _params(optimizer)]
    loss.backward(inputs=inputs, retain_graph=retain)


def _targets(real_imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ones = torch.ones(real_imgs.size(0), 1, device=real_imgs.device, dtype=real_imgs.dtype)
    return ones, torch.zeros_like(ones)


# As in the reference, `*labels` and `*gen_labels` are empty for the plain models.


def two_pass(G, D, optimizer_G, optimizer_D, real, noise):
    """G on ∇_G g_loss(G_t, D_t); D on ∇_D d_loss(G_{t+1}, D_t), G's second pass not recorded."""
    (real_imgs, labels), (z, gen_labels) = split_labels(real), split_labels(noise)
    ones, zeros = _targets(real_imgs)
    g_loss = bce(D(G(z, *gen_labels), *gen_labels), ones)
    _backward(g_loss, optimizer_G)
    optimizer_G.step()

    with torch.no_grad():
        fake = G(z, *gen_labels)
    d_loss = bce(D(fake, *gen_labels), zeros) + bce(D(real_imgs, *labels), ones)
    _backward(d_loss, optimizer_D)
    optimizer_D.step()
    return g_loss, d_loss


def _shared_forward(G, D, real, noise):
    (real_imgs, labels), (z, gen_labels) = split_labels(real), split_labels(noise)
    ones, zeros = _targets(real_imgs)
    d_fake = D(G(z, *gen_labels), *gen_labels)
    d_real = D(real_imgs, *labels)
    return bce(d_fake, ones), bce(d_fake, zeros) + bce(d_real, ones)


def shared_joint(G, D, optimizer_G, optimizer_D, real, noise):
    """Both networks on ∇(g_loss + d_loss): one backward pass of the sum."""
    g_loss, d_loss = _shared_forward(G, D, real, noise)
    _backward(g_loss + d_loss, optimizer_G, optimizer_D)
    optimizer_G.step()
    optimizer_D.step()
    return g_loss, d_loss


def shared_sequential(G, D, optimizer_G, optimizer_D, real, noise):
    """G on ∇_G g_loss, D on ∇_D d_loss, one forward pass; ∇_D g_loss is never computed."""
    g_loss, d_loss = _shared_forward(G, D, real, noise)
    _backward(g_loss, optimizer_G, retain=True)
    _backward(d_loss, optimizer_D)
    optimizer_G.step()
    optimizer_D.step()
    return g_loss, d_loss


def shared_accumulate(G, D, optimizer_G, optimizer_D, real, noise):
    """G on ∇_G g_loss, D on ∇_D (g_loss + d_loss), one forward pass; ∇_G d_loss never computed."""
    g_loss, d_loss = _shared_forward(G, D, real, noise)
    _backward(g_loss, optimizer_G, retain=True)
    _backward(g_loss + d_loss, optimizer_D)
    optimizer_G.step()
    optimizer_D.step()
    return g_loss, d_loss


def d_first(G, D, optimizer_G, optimizer_D, real, noise):
    """D on ∇_D d_loss(G_t, D_t), fakes detached; then G through D_{t+1}, no ∇_D computed."""
    (real_imgs, labels), (z, gen_labels) = split_labels(real), split_labels(noise)
    ones, zeros = _targets(real_imgs)
    d_real = D(real_imgs, *labels)
    fake = G(z, *gen_labels)
    d_loss = bce(d_real, ones) + bce(D(fake.detach(), *gen_labels), zeros)
    _backward(d_loss, optimizer_D)
    optimizer_D.step()

    g_loss = bce(D(fake, *gen_labels), ones)
    _backward(g_loss, optimizer_G)
    optimizer_G.step()
    return g_loss, d_loss


STRATEGIES: dict[str, Strategy] = {
    "two_pass": two_pass,
    "shared_joint": shared_joint,
    "shared_sequential": shared_sequential,
    "shared_accumulate": shared_accumulate,
    "d_first": d_first,
}
