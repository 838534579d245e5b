"""Strict settings for every test, the real MNIST files that CI has beside its checkout, and the
tiny trained runs that the evaluation and sampling tests share."""

import os
from pathlib import Path

import jax
import pytest

from jaxgan.__main__ import train as train_command
from jaxgan.training import TrainConfig, train

# Implicit rank promotion hides shape bugs ([B] + [B, 1] -> [B, B]); make it an error.
jax.config.update("jax_numpy_rank_promotion", "raise")


def _pin_xdist_worker() -> None:
    """Gives each pytest-xdist worker its own share of the cores.

    XLA's and PyTorch's thread pools size themselves to every core the process may use; two
    workers on two cores then run four busy threads (tests/test_fast.py, PyTorch alone, took
    194 s of test time in the whole suite and 18 s run by itself; pinned, it is no longer among
    the slow ones). Pinned before
    JAX or PyTorch starts, each worker's pools see only its cores (with two workers on two
    cores, each runs as under `taskset -c N`: one more summation order the tests must hold to).
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if worker is None or workers > len(cores):
        return
    share = len(cores) // workers
    index = int(worker.removeprefix("gw"))
    os.sched_setaffinity(0, cores[index * share : (index + 1) * share])


_pin_xdist_worker()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Refuses `--dist loadgroup` when its groups would be ignored.

    pytest-xdist marks a grouped test by appending `@group` to its node id (in the workers,
    before this hook); with a pytest that ignores the change, every test is scheduled alone,
    and the modules that share work between tests (test_strategies, test_parity, test_convert)
    repeat it in every worker, silently.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    grouped = [item for item in items if item.get_closest_marker("xdist_group")]
    if grouped and "@" not in grouped[0].nodeid:
        raise pytest.UsageError(
            f"pytest-xdist's loadgroup did not group {grouped[0].nodeid} (pytest "
            f"{pytest.__version__}); install pytest<9, as pyproject.toml's dev extra does"
        )


MNIST_DIR = Path(
    os.environ.get("JAXGAN_TEST_MNIST", Path(__file__).parents[1] / "../shared/data/mnist")
)


FASHION_DIR = Path(os.environ.get("JAXGAN_TEST_FASHION", "/usr/share/datasets/fashion-mnist"))


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """Fashion-MNIST's IDX files, from Debian's `dataset-fashion-mnist` (.ci/run installs it)."""
    if not (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST not found at {FASHION_DIR}: apt-get install "
                    f"dataset-fashion-mnist, or set JAXGAN_TEST_FASHION")  # fmt: skip
    return FASHION_DIR


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder of real MNIST IDX files (`../shared/data/mnist` beside the checkout)."""
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real MNIST not found at {MNIST_DIR.resolve()}; set JAXGAN_TEST_MNIST")
    return MNIST_DIR.resolve()


# 640 examples in batches of 64: 10 updates per epoch; checkpoints at steps 10 and 20.
TINY = {"train_examples": 640, "batch_size": 64, "log_every": 5, "num_samples": 16, "epochs": 2}


@pytest.fixture(scope="session")
def plain_run(mnist_dir, tmp_path_factory):
    """`(workdir, final state)` of a two-epoch DCGAN run on 640 images, with a tanh generator."""
    workdir = tmp_path_factory.mktemp("run")
    config = TrainConfig(
        model="dcgan", features=8, pixel_range="symmetric", data_dir=str(mnist_dir), **TINY
    )
    with pytest.warns(UserWarning, match="only 10 updates"):
        return workdir, train(config, workdir, progress=False)


@pytest.fixture(scope="session")
def conditional_run(mnist_dir, tmp_path_factory) -> Path:
    """The workdir of a one-epoch conditional DCGAN run (10 updates on 640 images, sigmoid
    output), trained through the CLI; its one checkpoint is step 10."""
    workdir = tmp_path_factory.mktemp("conditional") / "run"
    status = train_command([
        "--conditional", "--model", "dcgan", "--features", "8", "--data-dir", str(mnist_dir),
        "--train-examples", "640", "--epochs", "1", "--log-every", "5", "--no-progress",
        "--workdir", str(workdir),
    ])  # fmt: skip
    assert status == 0
    return workdir
