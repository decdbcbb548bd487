"""LmdbPairs: image + label LMDBs with the same keys in the same order (Caffe FCN's storage).

The image LMDB holds Datums as ``convert_imageset`` writes them (raw or encoded);
the label LMDB holds one single-channel uint8 Datum per key (raw, or an encoded
PNG whose palette indices are kept). Record ``i`` pairs the ``i``-th key of both;
the key lists must be equal (checked at construction, the first difference named).
Yields ``{"data": uint8 (C, H, W), "mask": uint8 (1, H, W)}``.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import lmdb
import numpy as np
from google.protobuf.message import DecodeError

from ..caffe_pb import Datum
from ..errors import RecordError
from ..spec import ArraySpec, Sample, Spec
from .base import Source
from .caffe_lmdb import read_keys, shared_env
from .decode import channels_of, check_mode, decode_datum, decode_mask
from .pairs import encoded_hw
from .strings import StringTable, cut


def first_key_difference(a: StringTable, b: StringTable) -> Optional[str]:
    """None when both key lists are equal, else a sentence naming the first difference."""
    for i in range(min(len(a), len(b))):
        if a.raw(i) != b.raw(i):
            return f"key #{i} is {a[i]!r} in the images but {b[i]!r} in the labels"
    if len(a) != len(b):
        return f"the images hold {len(a)} keys, the labels {len(b)}"
    return None


class LmdbPairs(Source):
    """Aligned image and label LMDBs; ``mode`` decodes encoded images (color / gray / native)."""

    def __init__(self, images: str | os.PathLike, labels: str | os.PathLike, *, mode: str = "native"):
        self.images, self.labels = os.fspath(images), os.fspath(labels)
        self.mode = check_mode(mode)
        for path, role in ((self.images, "images"), (self.labels, "labels")):
            if not os.path.exists(path):
                raise ValueError(f"{role} LMDB {cut(repr(path))} does not exist: check the path")
        self._keys = read_keys(self.images)
        difference = first_key_difference(self._keys, read_keys(self.labels))
        if difference:
            raise ValueError(f"LMDBs {self.images!r} and {self.labels!r} are not aligned: {difference}")
        if not len(self._keys):
            raise ValueError(f"LMDB {self.images!r} is empty")

    def __len__(self) -> int:
        return len(self._keys)

    def key(self, i: int) -> str:
        return f"{self.images}:{self._keys[self._check_index(i)]}"

    def _get(self, which: int, i: int) -> Datum:
        path = (self.images, self.labels)[which]
        value = shared_env(path).txn().get(self._keys.raw(i))  # one env + txn per process and thread
        if value is None:
            raise RecordError(self.key(i), f"key vanished from {path!r}")
        try:
            return Datum.FromString(value)
        except (DecodeError, lmdb.Error) as e:
            raise RecordError(self.key(i), f"value in {path!r} is not a Caffe Datum: {e}") from None

    def _mask(self, datum: Datum, i: int) -> np.ndarray:
        where = f"{self.labels}:{self._keys[i]}"
        if datum.encoded:
            return decode_mask(datum.data, key=where)
        shape = (datum.channels, datum.height, datum.width)
        if datum.channels != 1 or len(datum.data) != shape[0] * shape[1] * shape[2] or not datum.data:
            raise RecordError(where, f"label datum must be 1-channel uint8 data, got C,H,W = {shape} "
                              f"with {len(datum.data)} bytes")
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape)

    def __getitem__(self, i: int) -> Sample:
        i = self._check_index(i)
        data = decode_datum(self._get(0, i), mode=self.mode, key=self.key(i))
        mask = self._mask(self._get(1, i), i)
        if mask.shape[1:] != data.shape[1:] or data.dtype != np.uint8:
            raise RecordError(self.key(i), f"label {self.labels}:{self._keys[i]} is {mask.shape[1]}x"
                              f"{mask.shape[2]} but the image is {data.shape[1]}x{data.shape[2]} "
                              f"{data.dtype} (H x W; uint8 expected)")
        return {"data": data, "mask": mask}

    def image_hw(self, i: int) -> Tuple[int, int]:
        """(H, W) of record ``i`` from the Datum header (raw) or the encoded image's header."""
        datum = self._get(0, self._check_index(i))
        if not datum.encoded:
            return datum.height, datum.width
        return encoded_hw(datum.data, self.key(i), exif=self.mode != "native")

    def spec(self) -> Spec:
        return {"data": ArraySpec((channels_of(self.mode), None, None), np.uint8),
                "mask": ArraySpec((1, None, None), np.uint8)}

    def __repr__(self) -> str:
        return f"LmdbPairs({self.images!r}, {self.labels!r}, {len(self)} pairs, mode={self.mode!r})"
