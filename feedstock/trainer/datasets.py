"""MNIST-format idx files: a reader, the bundled Fashion-MNIST sample and the full Debian set."""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Tuple, Union

import numpy as np

PathLike = Union[str, Path]

# The bundled sample (4000 train + 1000 test images) lives inside the package.
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "fashion-mnist-sample"
# Where Debian's dataset-fashion-mnist package installs the full 60k + 10k set.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# idx type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}


def _open(path: Path) -> Union[gzip.GzipFile, BinaryIO]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: PathLike) -> np.ndarray:
    """Read one idx file (optionally gzipped) into a native-endian array."""
    path = Path(path)
    with _open(path) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an idx file (magic {raw[:4]!r})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown idx type code 0x{code:02x}")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: header says {shape} ({expected} bytes), payload has {len(raw) - header}")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write an array as an idx file, gzipped when the name ends in .gz (mtime 0: reproducible)."""
    path = Path(path)
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"dtype {array.dtype} has no idx type code")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=9) as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@dataclass(frozen=True)
class Split:
    """Images (N, 1, 28, 28) uint8 in Caffe's NCHW layout and labels (N,) int64."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def load_split(folder: PathLike, prefix: str) -> Split:
    """Load ``{prefix}-images-idx3-ubyte[.gz]`` and the matching labels from ``folder``."""
    folder = Path(folder)
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"{folder}/{prefix}: images {images.shape} do not match labels {labels.shape}")
    return Split(images[:, None, :, :], labels.astype(np.int64))


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {stem}[.gz]")


def load_fashion_mnist(*, full: bool = False) -> Tuple[Split, Split]:
    """(train, test): the bundled sample, or with ``full=True`` the Debian package's 60k + 10k."""
    folder = DEBIAN_DIR if full else SAMPLE_DIR
    if full and not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} not found: install the full set with `apt-get install dataset-fashion-mnist`")
    return load_split(folder, "train"), load_split(folder, "t10k")


def make_sample(source: PathLike, dest: PathLike, *, n_train: int = 4000, n_test: int = 1000) -> None:
    """Write the first ``n_train``/``n_test`` records of a full idx set as a small gzipped sample."""
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"{n_train=} and {n_test=} must be positive")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        split = load_split(source, prefix)
        write_idx(dest / f"{prefix}-images-idx3-ubyte.gz", split.images[:n, 0])
        write_idx(dest / f"{prefix}-labels-idx1-ubyte.gz", split.labels[:n].astype(np.uint8))
