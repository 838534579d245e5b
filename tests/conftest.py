"""Strict settings for every test, and the real MNIST files that CI has beside its checkout."""

import os
from pathlib import Path

import jax
import pytest

# Implicit rank promotion hides shape bugs ([B] + [B, 1] -> [B, B]); make it an error.
jax.config.update("jax_numpy_rank_promotion", "raise")

MNIST_DIR = Path(
    os.environ.get("JAXGAN_TEST_MNIST", Path(__file__).parents[1] / "../shared/data/mnist")
)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder of real MNIST IDX files (`../shared/data/mnist` beside the checkout)."""
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real MNIST not found at {MNIST_DIR.resolve()}; set JAXGAN_TEST_MNIST")
    return MNIST_DIR.resolve()
