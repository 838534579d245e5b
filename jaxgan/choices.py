"""The names of every choice jaxgan offers, in plain Python.

Each list is defined here once; the modules that implement the choices build their tables from
these names. Nothing here imports JAX, so the command line can parse its flags and print its
help at once, before JAX starts.
"""

from typing import Literal

# The five ways to train G and D together (`jaxgan.strategies`).
STRATEGY_NAMES = ("two_pass", "shared_joint", "shared_sequential", "shared_accumulate", "d_first")
# The model families (`jaxgan.models`).
MODEL_NAMES = ("mlp", "dcgan")
# What the models' matmuls and convolutions compute in (params, BatchNorm, losses and Adam stay
# in float32).
COMPUTE_DTYPES = ("float32", "bfloat16")
# The losses on the discriminator's logits (`jaxgan.losses`).
LOSS_NAMES = ("bce", "bce_logits")
# How images are scaled, with the generator output that matches: [0, 1] (`ToTensor()`) and a
# sigmoid, or [-1, 1] and a tanh.
PixelRange = Literal["unit", "symmetric"]
OUTPUTS = {"unit": "sigmoid", "symmetric": "tanh"}
PIXEL_RANGES = tuple(OUTPUTS)
# BatchNorm's epsilon, PyTorch's default.
BN_EPSILON = 1e-5
# The MNIST-format datasets jaxgan knows by name, and their classes.
CLASS_NAMES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion_mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
}  # fmt: skip
DATASETS = tuple(CLASS_NAMES)
NUM_CLASSES = 10  # every MNIST-format dataset: labels 0..9
