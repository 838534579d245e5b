"""A trained generator in one file: its weights, BatchNorm statistics and settings.

`save_generator` writes a flax msgpack file holding the generator's variables and everything
needed to rebuild the module; `load_generator` reads it back, with no run folder, training
code or discriminator, and samples like `jaxgan.sample`. `jaxgan-export RUN OUT.msgpack`
writes one from a training run.

Example::

    generator = jaxgan.load_generator("mnist-dcgan.msgpack")
    images = generator.sample(jax.random.key(0), num=64)   # in generator.pixel_range
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import numpy as np

from jaxgan.models import DCGANGenerator, MLPGenerator, PixelRange, to_unit_range
from jaxgan.sampling import Variables, generator_variables, sample

FORMAT = "jaxgan-generator"
VERSION = 1
_MODULES = {cls.__name__: cls for cls in (MLPGenerator, DCGANGenerator)}


@dataclasses.dataclass(frozen=True)
class Generator:
    """A generator module with its trained variables.

    Attributes:
      module: the flax module (`MLPGenerator` or `DCGANGenerator`, with its settings).
      variables: `{"params": ..., "batch_stats": ...}`.
      pixel_range: `"unit"` ([0, 1]) or `"symmetric"` ([-1, 1]), the range of its images.
      dataset: the dataset it was trained on, e.g. `"mnist"`.
    """

    module: nn.Module
    variables: dict[str, Any]
    pixel_range: PixelRange
    dataset: str

    def sample(
        self,
        key: jax.Array,
        num: int | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        unit_range: bool = False,
    ) -> jax.Array:
        """`jaxgan.sample` of this generator: `[N, 28, 28, 1]` in its pixel range, or in
        `[0, 1]` with `unit_range`."""
        images = sample(self.module, self.variables, key, labels=labels, num=num)
        return to_unit_range(images, self.pixel_range) if unit_range else images


def save_generator(
    path: str | Path,
    module: nn.Module,
    state: Variables,
    *,
    pixel_range: PixelRange,
    dataset: str,
) -> None:
    """Writes a generator and its variables (from a `GANState` or a dict) to one file.

    Raises:
      ValueError: the module is not one of jaxgan's generators.
    """
    name = type(module).__name__
    if name not in _MODULES:
        raise ValueError(f"cannot export a {name}; jaxgan exports {sorted(_MODULES)}")
    settings = {
        f.name: getattr(module, f.name)
        for f in dataclasses.fields(module)
        if f.name not in ("parent", "name")
    }
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "module": name,
        "settings": _encode(settings),
        "pixel_range": pixel_range,
        "dataset": dataset,
        "variables": jax.device_get(generator_variables(state)),
    }
    Path(path).write_bytes(flax.serialization.msgpack_serialize(blob))


def load_generator(path: str | Path) -> Generator:
    """Reads a file `save_generator` wrote.

    Raises:
      ValueError: naming the file, when it is not a jaxgan generator file or its weights do not
        fit the module it describes.
    """
    path = Path(path)
    try:
        blob = flax.serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # msgpack raises several kinds for a file that is not msgpack
        raise ValueError(f"{path} is not a jaxgan generator file ({type(e).__name__})") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a jaxgan generator file")
    if blob["version"] != VERSION or blob["module"] not in _MODULES:
        raise ValueError(
            f"{path}: {blob['module']} in format version {blob['version']}; this jaxgan reads "
            f"version {VERSION} of {sorted(_MODULES)}"
        )
    module = _MODULES[blob["module"]](**_decode(blob["settings"]))
    inputs = [np.zeros((1, module.latent_dim), np.float32)]
    if module.num_classes is not None:
        inputs.append(np.zeros(1, np.int32))
    expected = jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs, train=False))
    variables = blob["variables"]
    want = jax.tree.map(lambda s: (s.shape, s.dtype), expected)
    got = jax.tree.map(lambda x: (x.shape, x.dtype), variables)
    if want != got:
        raise ValueError(f"{path}: the weights do not fit {blob['module']}{blob['settings']}")
    return Generator(module, variables, blob["pixel_range"], blob["dataset"])


def _encode(settings: dict[str, Any]) -> dict[str, Any]:
    # msgpack has no None and no tuples: mark absent values, store sequences as lists.
    return {
        k: {"none": True} if v is None else list(v) if isinstance(v, tuple) else v
        for k, v in settings.items()
    }


def _decode(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        k: None if isinstance(v, dict) else tuple(v) if isinstance(v, list) else v
        for k, v in settings.items()
    }
