"""The IDX reader on the real MNIST files and on broken ones; TFDS through its own mock."""

import gzip
import time

import numpy as np
import pytest

from jaxgan.training import data
from jaxgan.training.data import DataError, DataUnavailableError, load_idx_split, read_idx, to_float

# From the data's provenance (../shared/data/README.md), not from this reader.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize(("split", "counts"), [("train", TRAIN_COUNTS), ("test", TEST_COUNTS)])
def test_real_mnist_idx_files(mnist_dir, split, counts):
    ds = load_idx_split(mnist_dir, split)
    assert ds.images.shape == (sum(counts), 28, 28, 1)
    assert ds.images.dtype == np.uint8 and ds.labels.dtype == np.int32
    assert ds.images.min() == 0 and ds.images.max() == 255
    np.testing.assert_array_equal(np.bincount(ds.labels, minlength=10), counts)
    x = to_float(ds.images[:100])
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x, ds.images[:100].astype(np.float32) / 255)  # ToTensor
    s = to_float(ds.images[:100], "symmetric")
    assert s.min() == -1.0 and s.max() == 1.0


def test_dataset_env_var_points_at_idx_files(mnist_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(mnist_dir))
    ds = data.load_dataset("mnist", "test")
    assert len(ds) == 10_000 and ds.source == str(mnist_dir)


def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + payload


def _write_split(folder, images: bytes, labels: bytes, compress: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    for stem, content in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / stem).write_bytes(content)
    return folder


GOOD_IMAGES = _idx(0x803, (3, 28, 28), bytes(range(256)) * 9 + bytes(3 * 784 - 2304))
GOOD_LABELS = _idx(0x801, (3,), bytes([1, 7, 9]))


def test_small_split_round_trips_plain_and_gzipped(tmp_path):
    for compress in (False, True):
        folder = _write_split(tmp_path / str(compress), GOOD_IMAGES, GOOD_LABELS, compress)
        ds = load_idx_split(folder, "test")
        assert ds.images.shape == (3, 28, 28, 1)
        np.testing.assert_array_equal(ds.labels, [1, 7, 9])
        assert ds.images.reshape(-1)[255] == 255


BAD_FILES = {
    "wrong magic": (_idx(0x801, (3, 28, 28), bytes(3 * 784)), GOOD_LABELS, "magic number 0x801"),
    "not an IDX": (b"\x89PNG\r\n\x1a\n" + bytes(100), GOOD_LABELS, "not an unsigned-byte IDX"),
    "truncated": (GOOD_IMAGES[:-10], GOOD_LABELS, "truncated or corrupt"),
    "header cut": (GOOD_IMAGES[:10], GOOD_LABELS, "ends early"),
    "count disagrees": (_idx(0x803, (4, 28, 28), bytes(3 * 784)), GOOD_LABELS, "truncated"),
    "lengths differ": (GOOD_IMAGES, _idx(0x801, (2,), bytes([1, 2])), "holds 3 images but"),
    "not 28x28": (_idx(0x803, (3, 32, 32), bytes(3 * 1024)), GOOD_LABELS, "32x32, not 28x28"),
    "label out of range": (GOOD_IMAGES, _idx(0x801, (3,), bytes([1, 2, 12])), "outside 0..9"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_fail_with_the_file_and_the_problem(tmp_path, case):
    images, labels, problem = BAD_FILES[case]
    folder = _write_split(tmp_path, images, labels)
    with pytest.raises(DataError, match=problem) as info:
        load_idx_split(folder, "test")
    assert str(tmp_path) in str(info.value)


def test_corrupt_gzip_names_the_file(tmp_path):
    folder = _write_split(tmp_path, GOOD_IMAGES, GOOD_LABELS, compress=True)
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: cannot read"):
        load_idx_split(folder, "test")


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_idx_split(tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_idx_split(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_idx_split(tmp_path, "validation")


def test_read_idx_reads_any_unsigned_byte_idx(tmp_path):
    path = tmp_path / "cube"
    path.write_bytes(_idx(0x804, (2, 3, 4, 5), bytes(range(120))))
    np.testing.assert_array_equal(
        read_idx(path), np.arange(120, dtype=np.uint8).reshape(2, 3, 4, 5)
    )


def test_tfds_path_with_tfds_mock_data(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    # mock_data replaces TFDS's download and preparation; our reachability check, which runs
    # before TFDS is asked to download, is replaced the same way.
    monkeypatch.setattr(data, "_host_reachable", lambda host, timeout: True)
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
        ds = data.load_tfds("mnist", "train")
    assert ds.images.shape == (12, 28, 28, 1) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (12,) and 0 <= ds.labels.min() <= ds.labels.max() <= 9
    assert ds.source == "tfds:mnist"


def test_tfds_prepares_mnist_from_the_original_files(mnist_dir, tmp_path, monkeypatch):
    """TFDS's real MNIST builder, fed the original files instead of its download."""
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("tensorflow")  # TFDS needs it to prepare MNIST
    raw = tmp_path / "downloads"
    raw.mkdir()
    for gz in mnist_dir.glob("*.gz"):
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))

    def download_and_extract(self, urls):
        return {
            name: raw / url.rsplit("/", 1)[-1].removesuffix(".gz") for name, url in urls.items()
        }

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", download_and_extract)
    monkeypatch.setattr(data, "_host_reachable", lambda host, timeout: True)
    got = data.load_tfds("mnist", "test", tfds_dir=str(tmp_path / "tfds"))
    want = load_idx_split(mnist_dir, "test")

    # TFDS shuffles examples when it writes them: compare the two as sets of (image, label).
    def canonical(ds):
        rows = [ds.images[i].tobytes() + bytes([ds.labels[i]]) for i in range(len(ds))]
        return sorted(rows)

    assert canonical(got) == canonical(want)
    # A second call reuses TFDS's cache: no download, no reachability check.
    monkeypatch.setattr(data, "_host_reachable", lambda host, timeout: pytest.fail("not cached"))
    assert len(data.load_tfds("mnist", "test", tfds_dir=str(tmp_path / "tfds"))) == 10_000


def test_offline_without_data_dir_fails_fast_with_instructions(tmp_path, monkeypatch, caplog):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    # A host under .invalid never resolves (RFC 6761): the real lookup, failing as offline does.
    monkeypatch.setitem(data.TFDS_DOWNLOAD_HOSTS, "mnist", "tfds-host.invalid")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(DataUnavailableError, match="--data-dir") as info:
        data.load_dataset("mnist", "train")
    assert time.monotonic() - started < 10
    assert data.DATA_DIR_ENV in str(info.value) and "tfds-host.invalid" in str(info.value)
    # jaxgan's message is the only one: not TFDS's warning about a folder that does not exist.
    assert not [r for r in caplog.records if r.name == "absl"], caplog.text
