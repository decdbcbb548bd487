"""A made-up source kind for tests/test_stream.py: rows of a ``.npz`` file (``data`` and ``label`` arrays).

This module is all a new kind needs besides its one registry entry: a Source and
the opener the entry names.
"""
from __future__ import annotations

import numpy as np

from feedstock.loaders.base import Source, as_label
from feedstock.spec import ArraySpec, Sample, Spec


class NpzRows(Source):
    """Record ``i``: ``data[i]`` and ``label[i]`` of the .npz file at ``path`` (opened lazily per process)."""

    _handles = ("_arrays",)

    def __init__(self, path: str):
        self.path = path
        with np.load(path) as f:
            self._length, self._shape, self._dtype = len(f["data"]), f["data"].shape[1:], f["data"].dtype
        self._arrays = None

    def __len__(self) -> int:
        return self._length

    def _open(self):
        if self._arrays is None:
            with np.load(self.path) as f:
                self._arrays = {"data": f["data"], "label": f["label"]}
        return self._arrays

    def __getitem__(self, i: int) -> Sample:
        i = self._check_index(i)
        arrays = self._open()
        return {"data": arrays["data"][i], "label": as_label(int(arrays["label"][i]))}

    def key(self, i: int) -> str:
        return f"{self.path}:{i}"

    def spec(self) -> Spec:
        return {"data": ArraySpec(self._shape, self._dtype), "label": ArraySpec((), np.int64)}


def open_npz(stream, needs) -> NpzRows:
    return NpzRows(stream.source)
