"""jaxgan: GAN training in JAX with explicit gradient semantics.

The core library: the five training strategies as pure, jittable steps, the models and layers,
the losses, the state pytree, sampling and generator files. The training application
(`jaxgan.training`) and the evaluation kit (`jaxgan.eval`) are built on it; it imports neither.

Names load on first use, so `import jaxgan` (and the command line's `--help`) starts at once
and JAX starts with the first model, step or sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxgan._lazy import lazy_exports

# Every public name, and the module that defines it.
_EXPORTS = {
    "STRATEGIES": "jaxgan.strategies",
    "make_train_step": "jaxgan.strategies",
    "MODELS": "jaxgan.models",
    "make_models": "jaxgan.models",
    "to_unit_range": "jaxgan.models",
    "PIXEL_RANGES": "jaxgan.choices",
    "LOSSES": "jaxgan.losses",
    "bce": "jaxgan.losses",
    "BatchNorm": "jaxgan.layers",
    "GANState": "jaxgan.state",
    "adam": "jaxgan.state",
    "create_state": "jaxgan.state",
    "generate": "jaxgan.sampling",
    "sample": "jaxgan.sampling",
    "Generator": "jaxgan.export",
    "load_generator": "jaxgan.export",
    "save_generator": "jaxgan.export",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from jaxgan.choices import PIXEL_RANGES as PIXEL_RANGES
    from jaxgan.export import Generator as Generator
    from jaxgan.export import load_generator as load_generator
    from jaxgan.export import save_generator as save_generator
    from jaxgan.layers import BatchNorm as BatchNorm
    from jaxgan.losses import LOSSES as LOSSES
    from jaxgan.losses import bce as bce
    from jaxgan.models import MODELS as MODELS
    from jaxgan.models import make_models as make_models
    from jaxgan.models import to_unit_range as to_unit_range
    from jaxgan.sampling import generate as generate
    from jaxgan.sampling import sample as sample
    from jaxgan.state import GANState as GANState
    from jaxgan.state import adam as adam
    from jaxgan.state import create_state as create_state
    from jaxgan.strategies import STRATEGIES as STRATEGIES
    from jaxgan.strategies import make_train_step as make_train_step
