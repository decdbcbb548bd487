"""idx reader/writer round trips and the bundled real Fashion-MNIST sample."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from feedstock.trainer.datasets import DEBIAN_DIR, SAMPLE_DIR, load_fashion_mnist, make_sample, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path, dtype, name):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    write_idx(tmp_path / name, arr)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, arr)


def test_idx_header_is_the_mnist_layout(tmp_path):
    write_idx(tmp_path / "l.idx", np.array([7, 2, 1], dtype=np.uint8))
    # magic 0x00000801 (ubyte, 1 dim), big-endian count 3, then the bytes
    assert (tmp_path / "l.idx").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])


def test_idx_errors_name_the_file(tmp_path):
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="bad.idx: not an idx file"):
        read_idx(tmp_path / "bad.idx")
    with gzip.open(tmp_path / "short.idx.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match="short.idx.gz: header says"):
        read_idx(tmp_path / "short.idx.gz")


def test_bundled_sample_is_real_fashion_mnist():
    train, test = load_fashion_mnist()
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert set(np.unique(train.labels)) == set(range(10))
    assert np.bincount(train.labels).min() > 300  # roughly balanced classes
    # Real images: dark background corners, mostly bright centres, many distinct grey levels.
    assert train.images[:, 0, :2, :2].mean() < 20 and len(np.unique(train.images)) == 256
    assert (SAMPLE_DIR / "LICENSE").is_file() and (SAMPLE_DIR / "README.md").is_file()
    assert sum(p.stat().st_size for p in SAMPLE_DIR.glob("*.gz")) < 4 * 2**20


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist for the full set")
def test_sample_is_the_prefix_of_the_full_set(tmp_path):
    full_train, full_test = load_fashion_mnist(full=True)
    assert len(full_train) == 60000 and len(full_test) == 10000
    train, test = load_fashion_mnist()
    np.testing.assert_array_equal(full_train.images[:4000], train.images)
    np.testing.assert_array_equal(full_test.labels[:1000], test.labels)
    make_sample(DEBIAN_DIR, tmp_path, n_train=10, n_test=5)
    for name, n in (("train-images-idx3-ubyte.gz", 10), ("t10k-labels-idx1-ubyte.gz", 5)):
        np.testing.assert_array_equal(read_idx(tmp_path / name), read_idx(SAMPLE_DIR / name)[:n])
