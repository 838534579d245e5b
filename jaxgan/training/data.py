"""MNIST-format datasets: the original IDX files offline, tensorflow-datasets online.

Images come back as `uint8` arrays of shape `[N, 28, 28, 1]` (NHWC) and labels as `int32`
`[N]`; `to_float` maps pixels the way `torchvision.transforms.ToTensor` does (`x / 255`, in
`[0, 1]`), or to `[-1, 1]` for generators with a tanh output.

Where the data comes from, in order:
1. `data_dir` (the CLI's `--data-dir`), else the environment variable `JAXGAN_DATA_DIR`: a
   folder holding `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
   `t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]`. MNIST, Fashion-MNIST and
   KMNIST all ship in this format, so any of them loads the same way.
2. tensorflow-datasets (`mnist`, `fashion_mnist`), reusing its cache; when the dataset is not
   cached and its download host cannot be reached, a `DataUnavailableError` says so within
   seconds and tells how to point the loader at local files (TFDS itself would retry for
   minutes).
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import logging
import os
import socket
from pathlib import Path
from typing import Literal

import numpy as np

from jaxgan.choices import NUM_CLASSES, PixelRange

DATA_DIR_ENV = "JAXGAN_DATA_DIR"
Split = Literal["train", "test"]

_IDX_PREFIX = {"train": "train", "test": "t10k"}
_IMAGES_MAGIC = 0x803  # unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x801  # unsigned bytes, 1 dimension
# Where tensorflow-datasets downloads each dataset from; checked before TFDS is asked to.
TFDS_DOWNLOAD_HOSTS = {
    "mnist": "storage.googleapis.com",
    "fashion_mnist": "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
}


class DataError(ValueError):
    """A dataset file exists but is not what it should be."""


class DataUnavailableError(RuntimeError):
    """No local data was given and tensorflow-datasets cannot provide the dataset."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One split of an MNIST-format dataset, held in host memory.

    Attributes:
      images: `uint8[N, 28, 28, 1]`, raw pixel values in `[0, 255]`.
      labels: `int32[N]`, class indices in `[0, 9]`.
      source: where it was read from (a folder or `tfds:<name>`), for messages and logs.
    """

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.images)

    def take(self, n: int) -> Dataset:
        """The first `n` examples."""
        return Dataset(self.images[:n], self.labels[:n], self.source)


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) of unsigned bytes into a numpy array.

    Args:
      path: the file; a name ending in `.gz` is decompressed.
      expected_magic: `0x803` for images, `0x801` for labels; `None` accepts any unsigned-byte
        IDX file.

    Returns:
      A `uint8` array whose shape is the dimensions the header declares.

    Raises:
      DataError: naming the file, when the magic number is wrong, the header is cut short, or
        the payload holds fewer or more bytes than the header's dimensions call for.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip raises these for truncated or corrupt archives
        raise DataError(f"{path}: cannot read the file ({e})") from e
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08 or magic >> 16 != 0:
        raise DataError(
            f"{path}: magic number {magic:#x} is not an unsigned-byte IDX file "
            f"(expected {expected_magic or 0x803:#x} for images or 0x801 for labels)"
        )
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{path}: magic number {magic:#x}, expected {expected_magic:#x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: header declares {ndim} dimensions but the file ends early")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header declares shape {shape} ({expected} bytes of data) but the file "
            f"holds {len(raw) - header} bytes: truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(data_dir: Path, stem: str) -> Path:
    for candidate in (data_dir / stem, data_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{data_dir}: no {stem} or {stem}.gz")


def load_idx_split(data_dir: str | os.PathLike, split: Split = "train") -> Dataset:
    """Loads one split of an MNIST-format dataset from its original IDX files.

    Args:
      data_dir: folder with `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`.
      split: `"train"` or `"test"` (the `t10k` files).

    Returns:
      The split, with images `uint8[N, 28, 28, 1]` and labels `int32[N]`.

    Raises:
      FileNotFoundError: the folder or one of the two files is missing.
      DataError: a file is malformed, the images are not 28x28, or the image and label files
        disagree on the number of examples.
    """
    if split not in _IDX_PREFIX:
        raise ValueError(f"split must be one of {sorted(_IDX_PREFIX)}, got {split!r}")
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} does not exist")
    prefix = _IDX_PREFIX[split]
    images_path = _find(data_dir, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(data_dir, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, _IMAGES_MAGIC)
    labels = read_idx(labels_path, _LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, not 28x28")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise DataError(f"{labels_path}: label {labels.max()} is outside 0..{NUM_CLASSES - 1}")
    return Dataset(images[..., None], labels.astype(np.int32), str(data_dir))


def _host_reachable(host: str, timeout: float) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_message(name: str, reason: str) -> str:
    return (
        f"cannot load {name!r} through tensorflow-datasets: {reason}. To train offline, point "
        f"jaxgan at a folder with the original IDX files (train-images-idx3-ubyte[.gz], "
        f"train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        f"t10k-labels-idx1-ubyte[.gz]): pass --data-dir DIR to the CLI, data_dir=DIR to "
        f"load_dataset, or set {DATA_DIR_ENV}=DIR."
    )


def load_tfds(
    name: str, split: Split = "train", tfds_dir: str | None = None, timeout: float = 3.0
) -> Dataset:
    """Loads a split through tensorflow-datasets, failing fast when it cannot.

    Args:
      name: a TFDS name with MNIST's features (`mnist`, `fashion_mnist`).
      split: `"train"` or `"test"`.
      tfds_dir: TFDS's data directory; `None` uses TFDS's default (`~/tensorflow_datasets`).
      timeout: seconds to wait for the download host before giving up.

    Raises:
      DataUnavailableError: tensorflow-datasets is not installed, or the dataset is not in its
        cache and cannot be downloaded (host unreachable, or TensorFlow, which TFDS needs to
        prepare it, is missing).
    """
    if importlib.util.find_spec("tensorflow_datasets") is None:
        raise DataUnavailableError(
            _offline_message(
                name, "tensorflow-datasets is not installed (pip install jaxgan[tfds])"
            )
        )
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=tfds_dir, file_format="array_record")
    if not _is_prepared(builder):
        host = TFDS_DOWNLOAD_HOSTS.get(name)
        if host is not None and not _host_reachable(host, timeout):
            raise DataUnavailableError(
                _offline_message(name, f"it is not cached and {host} cannot be reached")
            )
        if importlib.util.find_spec("tensorflow") is None:
            raise DataUnavailableError(
                _offline_message(
                    name,
                    "it is not cached, and preparing it needs TensorFlow (pip install "
                    "tensorflow-cpu)",
                )
            )
        builder.download_and_prepare()
    source = builder.as_data_source(split=split)
    examples = [source[i] for i in range(len(source))]
    images = np.stack([np.asarray(ex["image"], np.uint8) for ex in examples])
    labels = np.asarray([ex["label"] for ex in examples], np.int32)
    if images.shape[1:] != (28, 28, 1):
        raise DataError(f"tfds:{name}: images of shape {images.shape[1:]}, not 28x28x1")
    return Dataset(images, labels, f"tfds:{name}")


def _is_prepared(builder) -> bool:
    """`builder.is_prepared()`, without the warning TFDS logs when it is not: TFDS names the
    version folder it looked in as lacking a `dataset_info.json` even where that folder does
    not exist, which reads as damage to a cache that is simply empty; what to do instead is in
    jaxgan's own message."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return builder.is_prepared()
    finally:
        logger.setLevel(level)


def load_dataset(
    name: str = "mnist", split: Split = "train", data_dir: str | os.PathLike | None = None
) -> Dataset:
    """Loads a split from local IDX files when a folder is given, else through TFDS.

    Args:
      name: the TFDS name, used only when no folder is given (the IDX files name themselves).
      split: `"train"` or `"test"`.
      data_dir: folder of IDX files; `None` falls back to `$JAXGAN_DATA_DIR`, then to TFDS.
    """
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir is not None:
        return load_idx_split(data_dir, split)
    return load_tfds(name, split)


def to_float(images: np.ndarray, pixel_range: PixelRange = "unit") -> np.ndarray:
    """Maps `uint8` pixels to `float32`: `x / 255` as `ToTensor` does, or `2x/255 - 1`."""
    x = np.asarray(images, np.float32) / np.float32(255)
    if pixel_range == "unit":
        return x
    if pixel_range == "symmetric":
        return x * np.float32(2) - np.float32(1)
    raise ValueError(f"pixel_range must be 'unit' or 'symmetric', got {pixel_range!r}")
