"""jaxgan: GAN training in JAX with explicit gradient semantics."""

from jaxgan.sampling import generate, sample
from jaxgan.layers import BatchNorm
from jaxgan.losses import LOSSES, bce, bce_with_logits
from jaxgan.models import MODELS, make_models
from jaxgan.state import GANState, adam, create_state
from jaxgan.strategies import STRATEGIES, make_train_step

__all__ = [
    "LOSSES",
    "MODELS",
    "STRATEGIES",
    "BatchNorm",
    "GANState",
    "adam",
    "bce",
    "bce_with_logits",
    "create_state",
    "generate",
    "make_models",
    "make_train_step",
    "sample",
]
