"""Mean images as Caffe's compute_image_mean writes them: legacy BlobProto fields, CHW, BGR.

Two accumulators:

* :class:`CaffeMean` repeats compute_image_mean bit for bit: one float32 running
  sum per element, updated datum by datum in key order, divided by the count.
* :class:`ExactMean` sums in float64, which holds uint8 sums exactly (up to
  2**53 / 255 records), so partial sums from workers, shards or a resumed build
  add up to the same bits in any grouping. Below 65,794 uint8 records the float32
  sum is exact too, so both give identical means; above it ExactMean is the more
  accurate of the two.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from google.protobuf.message import DecodeError

from ..caffe_pb import Datum, write_mean_file
from ..errors import RecordError
from ..loaders.decode import decode_datum
from .build.output import iter_db

Shape = Tuple[int, ...]


def _shape_error(key: str, shape: Shape, expected: Shape) -> ValueError:
    return ValueError(
        f"record {key!r} has shape {tuple(shape)} but the first record had {tuple(expected)}; "
        "a mean image needs every record to have the same shape (resize them when building)"
    )


class CaffeMean:
    """compute_image_mean's float32 running sum (``sum_blob.data(i) + data[i]``)."""

    def __init__(self) -> None:
        self.sum: Optional[np.ndarray] = None
        self.count = 0

    def add(self, chw: np.ndarray, key: str) -> None:
        """Add one CHW record; a different shape than the first record's is a clear error."""
        if self.sum is None:
            self.sum = np.zeros(chw.shape, dtype=np.float32)
        elif chw.shape != self.sum.shape:
            raise _shape_error(key, chw.shape, self.sum.shape)
        # casting='unsafe' converts each uint8 to float32 before the add, as C++ does.
        np.add(self.sum, chw, out=self.sum, casting="unsafe")
        self.count += 1

    def mean(self) -> np.ndarray:
        if self.sum is None or self.count == 0:
            raise ValueError("no records: cannot compute a mean")
        return self.sum / np.float32(self.count)


class ExactMean:
    """Float64 sums that merge exactly across chunks, workers, shards and resumes."""

    def __init__(self, total: Optional[np.ndarray] = None, count: int = 0) -> None:
        self.sum = None if total is None else np.asarray(total, dtype=np.float64)
        self.count = int(count)

    def add(self, chw: np.ndarray, key: str) -> None:
        self.add_sum(chw, 1, key)

    def add_sum(self, total: np.ndarray, count: int, key: str) -> None:
        """Add a partial sum of ``count`` records (a worker's chunk, a shard)."""
        if count == 0:
            return
        if self.sum is None:
            self.sum = np.zeros(total.shape, dtype=np.float64)
        elif total.shape != self.sum.shape:
            raise _shape_error(key, total.shape, self.sum.shape)
        np.add(self.sum, total, out=self.sum, casting="unsafe")
        self.count += int(count)

    def merge(self, other: "ExactMean", key: str) -> None:
        if other.sum is not None:
            self.add_sum(other.sum, other.count, key)

    def mean(self) -> np.ndarray:
        """The float32 mean, rounded as compute_image_mean rounds (float32 sum / count)."""
        if self.sum is None or self.count == 0:
            raise ValueError("no records: cannot compute a mean")
        return self.sum.astype(np.float32) / np.float32(self.count)


def channel_means(mean: np.ndarray) -> List[float]:
    """Per-channel mean of a (C, H, W) mean image: the values Caffe logs as ``mean_value channel [c]``."""
    mean = np.asarray(mean)
    return [float(v) for v in mean.reshape(mean.shape[0], -1).astype(np.float64).mean(axis=1)]


def mean_value_block(mean: np.ndarray) -> str:
    """Prototxt lines ready to paste into a ``transform_param`` block."""
    values = channel_means(mean)
    order = "BGR order" if len(values) == 3 else f"{len(values)} channel(s), stored order"
    lines = [f"# per-channel mean ({order}); paste into transform_param {{ ... }}"]
    lines += [f"mean_value: {v:.6g}" for v in values]
    return "\n".join(lines)


def write_mean_outputs(directory: str | os.PathLike, mean: np.ndarray) -> Tuple[Path, Path]:
    """Write ``mean.binaryproto`` (compute_image_mean layout) and ``mean.npy`` (the same CHW float32)."""
    directory = Path(directory)
    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim != 3:
        raise ValueError(f"mean must be (C, H, W), got shape {mean.shape}")
    proto = directory / "mean.binaryproto"
    npy = directory / "mean.npy"
    write_mean_file(proto, mean)
    np.save(npy, mean)
    return proto, npy


def datum_pixels(value: bytes, key: str, mode: str = "native") -> Tuple[np.ndarray, int]:
    """(CHW pixels, label) of a serialized Datum; encoded payloads decoded natively (DecodeDatumNative),
    or as force_color/force_gray do with ``mode`` "color"/"gray"."""
    try:
        datum = Datum.FromString(value)
    except DecodeError as e:
        raise RecordError(key, f"value is not a Caffe Datum ({len(value)} bytes): {e}") from None
    return decode_datum(datum, mode=mode, key=key), int(datum.label)


def compute_db_mean(path: str, progress=None) -> Tuple[np.ndarray, int]:
    """compute_image_mean on an LMDB: (float32 mean (C, H, W), record count), float32 running sums."""
    acc = CaffeMean()
    for key, value in iter_db(path):
        name = key.decode("utf-8", "backslashreplace")
        acc.add(datum_pixels(value, name)[0], name)
        if progress is not None:
            progress(1)
    return acc.mean(), acc.count
