"""The notes' PyTorch code, literally: both model families and the five training strategies.

Plain PyTorch, written to be read beside the notes (`../shared/notes`) and beside
`jaxgan.strategies`: `nn.Sequential` models whose last layer is `nn.Sigmoid()`, `nn.BCELoss()`
on labels shaped `[B, 1]`, `torch.optim.Adam`, and every step a sequence of `zero_grad()`,
`backward()` and `step()` calls in the order the notes (or the code they follow) make them.
Nothing here knows about JAX; `parity.convert` moves weights between the two worlds.

Each family has a class-conditional version, as jaxgan's `make_models(..., num_classes=n)`
builds it: G is called as `G(z, labels)` and concatenates a label embedding to the noise
(PyTorch-GAN's `cgan.py`), D as `D(img, labels)` and adds the projection term
`(embed(labels) * h).sum(1)` on its last hidden features `h` to its logit. The strategies take
a conditional batch as it comes, `(real_imgs, labels)` and `(z, gen_labels)`, and call the
networks as `cgan.py` does; conditioning is in the models and the batch, not the strategy.

Images are NCHW, as a PyTorch loader yields them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LATENT_DIM = 100
IMG_SHAPE = (1, 28, 28)

bce = nn.BCELoss()


class MLPGenerator(nn.Module):
    """PyTorch-GAN's `gan.py` generator, with a sigmoid output for `ToTensor` images.

    `gan.py` writes `nn.BatchNorm1d(out_feat, 0.8)`, whose second positional argument is `eps`:
    its users train with `bn_eps=0.8`; jaxgan's default is PyTorch's 1e-5.
    """

    def __init__(self, latent_dim: int = LATENT_DIM, bn_eps: float = 0.8):
        super().__init__()

        def block(in_feat, out_feat, normalize=True):
            layers = [nn.Linear(in_feat, out_feat)]
            if normalize:
                layers.append(nn.BatchNorm1d(out_feat, bn_eps))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.model = nn.Sequential(
            *block(latent_dim, 128, normalize=False),
            *block(128, 256),
            *block(256, 512),
            *block(512, 1024),
            nn.Linear(1024, 28 * 28),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        img = self.model(z)
        return img.view(img.size(0), *IMG_SHAPE)


class MLPDiscriminator(nn.Module):
    """PyTorch-GAN's `gan.py` discriminator: `784 -> 512 -> 256 -> 1`, sigmoid."""

    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(256, 1),
            nn.Sigmoid(),
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.model(img.view(img.size(0), -1))


def _blocks_3x3(
    channels: int, bn_eps: float, count: int, activation: Callable[[], nn.Module]
) -> list[nn.Module]:
    """`count` blocks of `Conv2d(channels, channels, 3, 1, 1)`, BatchNorm and a new
    `activation()`: the DCGAN's `extra_layers` (`jaxgan.make_models`)."""
    return [
        module
        for _ in range(count)
        for module in (
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels, bn_eps),
            activation(),
        )
    ]


class DCGANGenerator(nn.Module):
    """The PyTorch DCGAN example's generator, scaled to 28x28: 1x1 -> 7x7 -> 14x14 -> 28x28,
    with `extra_layers` 3x3 blocks at 7x7."""

    def __init__(
        self,
        latent_dim: int = LATENT_DIM,
        features: int = 64,
        bn_eps: float = 1e-5,
        extra_layers: int = 0,
    ):
        super().__init__()
        f = features
        self.main = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 2 * f, 7, 1, 0, bias=False),
            nn.BatchNorm2d(2 * f, bn_eps),
            nn.ReLU(True),
            *_blocks_3x3(2 * f, bn_eps, extra_layers, lambda: nn.ReLU(True)),
            nn.ConvTranspose2d(2 * f, f, 4, 2, 1, bias=False),
            nn.BatchNorm2d(f, bn_eps),
            nn.ReLU(True),
            nn.ConvTranspose2d(f, 1, 4, 2, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.view(z.size(0), z.size(1), 1, 1))


def _dcgan_d_hidden(features: int, bn_eps: float, extra_layers: int) -> list[nn.Module]:
    f = features
    return [
        nn.Conv2d(1, f, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(f, 2 * f, 4, 2, 1, bias=False),
        nn.BatchNorm2d(2 * f, bn_eps),
        nn.LeakyReLU(0.2, inplace=True),
        *_blocks_3x3(2 * f, bn_eps, extra_layers, lambda: nn.LeakyReLU(0.2, inplace=True)),
    ]


class DCGANDiscriminator(nn.Module):
    """The PyTorch DCGAN example's discriminator, scaled to 28x28: 28 -> 14 -> 7 -> 1, with
    `extra_layers` 3x3 blocks at 7x7."""

    def __init__(self, features: int = 64, bn_eps: float = 1e-5, extra_layers: int = 0):
        super().__init__()
        self.main = nn.Sequential(
            *_dcgan_d_hidden(features, bn_eps, extra_layers),
            nn.Conv2d(2 * features, 1, 7, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.main(img).view(-1, 1)


class ConditionalMLPGenerator(MLPGenerator):
    """PyTorch-GAN's `cgan.py` generator: the label's embedding concatenated to the noise."""

    def __init__(self, n_classes: int, latent_dim: int = LATENT_DIM, bn_eps: float = 0.8):
        super().__init__(latent_dim + n_classes, bn_eps)
        self.label_emb = nn.Embedding(n_classes, n_classes)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gen_input = torch.cat((self.label_emb(labels), noise), -1)
        return super().forward(gen_input)


class ConditionalMLPDiscriminator(nn.Module):
    """`gan.py`'s discriminator as a projection discriminator: `784 -> 512 -> 256 -> 1` plus
    `(embed(labels) * h).sum(1)` on the 256 hidden features `h`, then the sigmoid."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.projection = nn.Embedding(n_classes, 256)
        self.adv_layer = nn.Linear(256, 1)

    def forward(self, img: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.model(img.view(img.size(0), -1))
        logit = self.adv_layer(h) + (self.projection(labels) * h).sum(1, keepdim=True)
        return torch.sigmoid(logit)


class ConditionalDCGANGenerator(DCGANGenerator):
    """The DCGAN generator on the label's embedding concatenated to the noise (as `cgan.py`)."""

    def __init__(
        self,
        n_classes: int,
        latent_dim: int = LATENT_DIM,
        features: int = 64,
        bn_eps: float = 1e-5,
        extra_layers: int = 0,
    ):
        super().__init__(latent_dim + n_classes, features, bn_eps, extra_layers)
        self.label_emb = nn.Embedding(n_classes, n_classes)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gen_input = torch.cat((self.label_emb(labels), noise), -1)
        return super().forward(gen_input)


class ConditionalDCGANDiscriminator(nn.Module):
    """The DCGAN discriminator as a projection discriminator: its last 7x7 convolution plus
    `(embed(labels) * h).sum(1)` on the flattened `2f x 7 x 7` features `h`, then the sigmoid."""

    def __init__(
        self, n_classes: int, features: int = 64, bn_eps: float = 1e-5, extra_layers: int = 0
    ):
        super().__init__()
        f = features
        self.main = nn.Sequential(*_dcgan_d_hidden(f, bn_eps, extra_layers))
        self.projection = nn.Embedding(n_classes, 2 * f * 7 * 7)
        self.adv_layer = nn.Conv2d(2 * f, 1, 7, 1, 0, bias=False)

    def forward(self, img: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.main(img)
        class_term = (self.projection(labels) * h.flatten(1)).sum(1, keepdim=True)
        return torch.sigmoid(self.adv_layer(h).view(-1, 1) + class_term)


def make_models(
    name: str,
    features: int = 64,
    num_classes: int | None = None,
    bn_epsilon: float = 1e-5,
    extra_layers: int = 0,
) -> tuple[nn.Module, nn.Module]:
    """The PyTorch `(generator, discriminator)` of `jaxgan.make_models(name)`, in training mode.

    Args:
      name: `"mlp"` or `"dcgan"`.
      features: the DCGAN's base width (ignored by `mlp`).
      num_classes: `None` for the plain models; a class count for the conditional ones, called
        as `G(z, labels)` and `D(img, labels)`.
      bn_epsilon: every BatchNorm's `eps` (0.8 is PyTorch-GAN's MLP, see `MLPGenerator`).
      extra_layers: the DCGAN's 3x3 blocks at 7x7 in each network (`jaxgan.make_models`).

    Returns:
      Freshly initialized modules; `parity.convert` loads jaxgan's weights into them.
    """
    if name not in ("mlp", "dcgan"):
        raise ValueError(f"unknown model {name!r}; choose 'mlp' or 'dcgan'")
    if extra_layers and name != "dcgan":
        raise ValueError("extra_layers are the DCGAN's")
    eps, extra = bn_epsilon, extra_layers
    if num_classes is None:
        if name == "mlp":
            return MLPGenerator(bn_eps=eps), MLPDiscriminator()
        return (
            DCGANGenerator(features=features, bn_eps=eps, extra_layers=extra),
            DCGANDiscriminator(features, eps, extra),
        )
    if name == "mlp":
        G = ConditionalMLPGenerator(num_classes, bn_eps=eps)
        return G, ConditionalMLPDiscriminator(num_classes)
    return (
        ConditionalDCGANGenerator(num_classes, features=features, bn_eps=eps, extra_layers=extra),
        ConditionalDCGANDiscriminator(num_classes, features, eps, extra),
    )


def make_optimizer(module: nn.Module) -> torch.optim.Adam:
    """The notes' optimizer, `Adam(lr=2e-4, betas=(0.5, 0.999))`: jaxgan's `adam()`."""
    return torch.optim.Adam(module.parameters(), lr=2e-4, betas=(0.5, 0.999))


# Real images, or (real_imgs, labels) for the conditional models; noise likewise z or (z, labels).
Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
# A strategy makes one training step and returns (g_loss, d_loss), as tensors.
Strategy = Callable[
    [nn.Module, nn.Module, torch.optim.Optimizer, torch.optim.Optimizer, Batch, Batch],
    tuple[torch.Tensor, torch.Tensor],
]


def split_labels(batch: Batch) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """`x` -> `(x, ())`; `(x, labels)` -> `(x, (labels,))`: the labels a network call adds."""
    if isinstance(batch, tuple):
        x, labels = batch
        return x, (labels,)
    return batch, ()


def _targets(real_imgs):
    batch = real_imgs.size(0)
    ones = torch.ones(batch, 1, device=real_imgs.device, dtype=real_imgs.dtype)
    return ones, torch.zeros_like(ones)


# In the strategies `*labels` and `*gen_labels` add nothing for the plain models, and the labels
# for the conditional ones: `G(z, *gen_labels)` is `generator(z, gen_labels)` in `cgan.py`.


def two_pass(G, D, optimizer_G, optimizer_D, real, noise):
    """Notes §2: G trains on one forward pass, D on a second one through the updated G."""
    (real_imgs, labels), (noise, gen_labels) = split_labels(real), split_labels(noise)
    real_label, fake_label = _targets(real_imgs)

    gen_imgs = G(noise, *gen_labels)
    d_fake = D(gen_imgs, *gen_labels)
    g_loss = bce(d_fake, real_label)
    optimizer_G.zero_grad()
    g_loss.backward()
    optimizer_G.step()

    gen_imgs = G(noise, *gen_labels)
    d_fake = D(gen_imgs, *gen_labels)
    d_real = D(real_imgs, *labels)
    d_loss = bce(d_fake, fake_label) + bce(d_real, real_label)
    optimizer_D.zero_grad()
    d_loss.backward()
    optimizer_D.step()
    return g_loss, d_loss


def _shared_forward(G, D, real, noise):
    (real_imgs, labels), (noise, gen_labels) = split_labels(real), split_labels(noise)
    real_label, fake_label = _targets(real_imgs)
    gen_imgs = G(noise, *gen_labels)
    d_fake = D(gen_imgs, *gen_labels)
    d_real = D(real_imgs, *labels)
    g_loss = bce(d_fake, real_label)
    d_loss = bce(d_fake, fake_label) + bce(d_real, real_label)
    return g_loss, d_loss


def shared_joint(G, D, optimizer_G, optimizer_D, real, noise):
    """The notes' method 1, as written: both backward passes accumulate into both networks."""
    g_loss, d_loss = _shared_forward(G, D, real, noise)
    optimizer_G.zero_grad()
    optimizer_D.zero_grad()
    g_loss.backward(retain_graph=True)
    d_loss.backward()
    optimizer_G.step()
    optimizer_D.step()
    return g_loss, d_loss


def shared_sequential_as_written(G, D, optimizer_G, optimizer_D, real, noise):
    """The notes' method 2, literally. Raises RuntimeError on PyTorch >= 1.5 (see `docs/parity.md`).

    `optimizer_G.step()` changes G's weights in place, bumping their version counters; then
    `d_loss.backward()` flows through `d_fake` back into G's retained graph, whose saved weights
    no longer have the version they were saved at, and autograd refuses to use them.
    """
    g_loss, d_loss = _shared_forward(G, D, real, noise)
    optimizer_G.zero_grad()
    g_loss.backward(retain_graph=True)
    optimizer_G.step()

    optimizer_D.zero_grad()
    d_loss.backward()
    optimizer_D.step()
    return g_loss, d_loss


def shared_sequential(G, D, optimizer_G, optimizer_D, real, noise):
    """The update method 2 as written intends: G on g_loss, D on d_loss alone, one forward pass.

    The notes' lines in the notes' order, with one change: `d_loss.backward` stops at D's
    parameters (`inputs=`), so autograd never walks back into G, whose weights
    `optimizer_G.step()` has just changed. D's gradient needs only D's saved tensors and the
    generated images, which are as they were in the forward pass: ∇_D d_loss at (G_t, D_t).
    `optimizer_D.zero_grad()` stays after `g_loss.backward`, so ∇_D g_loss is discarded.
    """
    g_loss, d_loss = _shared_forward(G, D, real, noise)
    optimizer_G.zero_grad()
    g_loss.backward(retain_graph=True)
    optimizer_G.step()

    optimizer_D.zero_grad()
    d_loss.backward(inputs=list(D.parameters()))
    optimizer_D.step()
    return g_loss, d_loss


def shared_accumulate(G, D, optimizer_G, optimizer_D, real, noise):
    """Method 2 as the notes describe it: D's `.grad` holds g_loss's gradient plus d_loss's."""
    g_loss, d_loss = _shared_forward(G, D, real, noise)
    optimizer_G.zero_grad()
    optimizer_D.zero_grad()
    g_loss.backward(retain_graph=True)
    d_loss.backward(inputs=list(D.parameters()))
    optimizer_G.step()
    optimizer_D.step()
    return g_loss, d_loss


def d_first(netG, netD, optimizerG, optimizerD, real, noise):
    """The PyTorch DCGAN example (`examples/dcgan/main.py`): D steps, then G through the new D."""
    (real, labels), (noise, gen_labels) = split_labels(real), split_labels(noise)
    real_label, fake_label = _targets(real)
    criterion = bce

    netD.zero_grad()
    output = netD(real, *labels)
    errD_real = criterion(output, real_label)
    errD_real.backward()
    fake = netG(noise, *gen_labels)
    output = netD(fake.detach(), *gen_labels)
    errD_fake = criterion(output, fake_label)
    errD_fake.backward()
    errD = errD_real + errD_fake
    optimizerD.step()

    netG.zero_grad()
    output = netD(fake, *gen_labels)
    errG = criterion(output, real_label)
    errG.backward()
    optimizerG.step()
    return errG, errD


STRATEGIES: dict[str, Strategy] = {
    "two_pass": two_pass,
    "shared_joint": shared_joint,
    "shared_sequential": shared_sequential,
    "shared_accumulate": shared_accumulate,
    "d_first": d_first,
}
