"""ArraySource: an in-memory Source over numpy arrays that share their first dimension."""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

from ..protocols import Indices
from ..spec import ArraySpec, Sample, Spec
from .base import Source, deliver


class ArraySource(Source):
    """``ArraySource(data=x, label=y)``: record ``i`` is ``{"data": x[i], "label": y[i]}``.

    Records are read-only views (a transform that writes into its input fails loudly
    instead of corrupting the dataset). Picklable; under ``fork`` the workers share
    the arrays copy-on-write. ``read_batch`` is the Loader's vectorised fast path.
    """

    def __init__(self, **fields: np.ndarray):
        if not fields:
            raise ValueError("ArraySource needs at least one field, e.g. ArraySource(data=x, label=y)")
        arrays: Dict[str, np.ndarray] = {}
        for name, value in fields.items():
            array = np.asarray(value)
            if array.ndim < 1:
                raise ValueError(f"field {name!r} is a scalar; every field needs a first (record) dimension")
            view = array.view()
            view.flags.writeable = False  # our view only: the caller's array keeps its flags
            arrays[name] = view
        lengths = {name: len(a) for name, a in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"fields differ in length (dim 0): {lengths}")
        self.arrays = arrays
        self._length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, i: int) -> Sample:
        i = self._check_index(i)
        return {name: a[i, ...] for name, a in self.arrays.items()}

    def key(self, i: int) -> str:
        return f"row {int(i)}"

    def spec(self) -> Spec:
        return {name: ArraySpec(a.shape[1:], a.dtype) for name, a in self.arrays.items()}

    def read_batch(self, indices: Indices, out: Optional[Mapping[str, np.ndarray]] = None) -> Sample:
        """Rows ``indices`` of every field, by one gather per field (straight into ``out``'s arrays when given)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -self._length or idx.max() >= self._length):
            raise IndexError(f"indices outside [0, {self._length}) for ArraySource")
        if out is None:
            return {name: np.take(a, idx, axis=0) for name, a in self.arrays.items()}
        for name, dst in out.items():
            a = self.arrays.get(name)
            if a is None or a.dtype != dst.dtype or dst.shape != (len(idx), *a.shape[1:]):
                deliver({name: np.take(a, idx, axis=0)} if a is not None else {}, {name: dst})  # names the problem
            else:  # equal dtypes only (take casts unsafely); 'wrap' avoids take's buffering (bounds checked above)
                np.take(a, idx, axis=0, out=dst, mode="wrap")
        return dict(out)

    def __setstate__(self, state: Dict[str, object]) -> None:
        super().__setstate__(state)
        for a in self.arrays.values():  # unpickled arrays are fresh and writable: keep them read-only
            a.flags.writeable = False

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={a.dtype}{list(a.shape[1:])}" for n, a in self.arrays.items())
        return f"ArraySource({self._length} records: {fields})"
