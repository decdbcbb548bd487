"""The Source contract: random access by index, a key per record, picklable without handles."""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

from ..casting import write_fields
from ..spec import Sample, Spec


class Source:
    """Base of every source.

    Subclasses store paths and a compact (numpy) index only. Handles (LMDB env,
    HDF5 file) open lazily in the reading process and are dropped by
    ``__getstate__`` (list their attribute names in ``_handles``). Sources with a
    vectorised read add ``read_batch`` (:class:`feedstock.protocols.BatchReadable`).
    """

    _handles: tuple = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> Sample:
        raise NotImplementedError

    def key(self, i: int) -> str:
        """A human-readable name of record ``i`` for error messages."""
        raise NotImplementedError

    def spec(self) -> Spec:
        """Per-field ArraySpec; ``None`` dims where only decoding tells (image sizes)."""
        raise NotImplementedError

    def _check_index(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {type(self).__name__} of length {n}")
        return i

    def __getstate__(self) -> Dict[str, object]:
        state = self.__dict__.copy()
        for name in self._handles:
            state[name] = None
        return state

    def __setstate__(self, state: Dict[str, object]) -> None:
        self.__dict__.update(state)


def as_label(value: int) -> np.ndarray:
    """Classification labels travel as int64 scalars (Caffe: int32 in the Datum, float in the blob)."""
    return np.asarray(value, dtype=np.int64)


def deliver(fields: Sample, out: Optional[Mapping[str, np.ndarray]]) -> Sample:
    """A batched read's result: ``fields`` itself, or written into ``out`` (never cast unsafely) and ``out``."""
    if out is None:
        return fields
    write_fields(fields, out)
    return dict(out)
