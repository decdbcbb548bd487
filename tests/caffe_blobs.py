"""Duck-typed pycaffe blobs for the Caffe layer tests (``.data``/``.diff`` float32 arrays, ``reshape(*dims)``),
and a DataLayer set up and run on them as Caffe would."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np


class Blob:
    """Behaves like ``caffe.Blob`` for a Python layer: reshape takes positional Python ints only,
    and reading ``.data`` before the first reshape fails (real Caffe aborts there)."""

    def __init__(self, *dims: int):
        self._data: Optional[np.ndarray] = None
        self._diff: Optional[np.ndarray] = None
        if dims:
            self.reshape(*dims)
        self.reshapes = 0

    @property
    def data(self) -> np.ndarray:
        if self._data is None:  # Caffe aborts the process here (Check failed: data_)
            raise RuntimeError("blob read before its first reshape")
        return self._data

    @property
    def diff(self) -> np.ndarray:
        if self._diff is None:
            raise RuntimeError("blob read before its first reshape")
        return self._diff

    def reshape(self, *dims: int) -> None:
        if not all(type(d) is int and d >= 0 for d in dims):
            raise TypeError(f"reshape takes non-negative Python ints, got {dims!r}")
        self._data = np.zeros(dims, dtype=np.float32)
        self._diff = np.zeros(dims, dtype=np.float32)
        self.reshapes = getattr(self, "reshapes", 0) + 1


class BlobVec:
    """Like pycaffe's ``RawBlobVec``: ``len`` and indexing work, iterating raises (Blob* has no converter)."""

    def __init__(self, items: List[Blob]):
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> Blob:
        if not isinstance(i, int):
            raise TypeError(f"RawBlobVec indices must be ints, got {i!r}")
        return self._items[i]

    def as_list(self) -> List[Blob]:
        """The test's own view of the blobs (a layer must index them)."""
        return list(self._items)

    def __iter__(self):
        raise TypeError("No to_python (by-value) converter found for C++ type: caffe::Blob<float>*")


def blobs(n: int) -> BlobVec:
    return BlobVec([Blob() for _ in range(n)])


def make_layer(params: Dict[str, Any], phase: int = 0, tops: int = 2):
    """A DataLayer with ``params`` as its param_str, set up on ``tops`` blobs."""
    from feedstock.caffe_layer import DataLayer

    layer = DataLayer()
    layer.param_str, layer.phase = repr(params), phase
    top = blobs(tops)
    layer.setup([], top)
    return layer, top


def run_forwards(layer: Any, top: BlobVec, n: int) -> List[np.ndarray]:
    """n reshape+forward rounds (as Caffe calls them); returns each top's rows concatenated."""
    out: List[List[np.ndarray]] = [[] for _ in range(len(top))]
    for _ in range(n):
        layer.reshape([], top)
        layer.forward([], top)
        for rows, blob in zip(out, top.as_list()):
            rows.append(blob.data.copy())
    return [np.concatenate(rows) for rows in out]
