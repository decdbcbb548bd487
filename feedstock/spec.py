"""ArraySpec and the sample/batch typing shared by sources, transforms and the pipeline."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

Sample = Dict[str, np.ndarray]


@dataclass(frozen=True)
class ArraySpec:
    """Shape and dtype of one field of one sample; ``None`` marks a dim known only per record."""

    shape: Tuple[Optional[int], ...]
    dtype: Any  # anything np.dtype() takes; an np.dtype once constructed

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(None if d is None else int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def fixed(self) -> bool:
        """True when every dim is known, so batch slots can be allocated."""
        return all(d is not None for d in self.shape)

    @property
    def nbytes(self) -> int:
        if not self.fixed:
            raise ValueError(f"spec {self} has unknown dims")
        return int(np.prod([int(d or 0) for d in self.shape], dtype=np.int64)) * self.dtype.itemsize

    def with_shape(self, shape) -> "ArraySpec":
        return ArraySpec(tuple(shape), self.dtype)

    def with_dtype(self, dtype) -> "ArraySpec":
        return ArraySpec(self.shape, dtype)

    @classmethod
    def of(cls, array: np.ndarray) -> "ArraySpec":
        return cls(tuple(array.shape), array.dtype)

    def matches(self, array: np.ndarray) -> bool:
        """True when ``array`` can be written into a row of this spec without reshaping."""
        if len(array.shape) != len(self.shape):
            return False
        return all(d is None or d == a for d, a in zip(self.shape, array.shape))


Spec = Dict[str, ArraySpec]


def spec_of(sample: Mapping[str, np.ndarray]) -> Spec:
    """The exact spec of one concrete sample."""
    return {k: ArraySpec.of(np.asarray(v)) for k, v in sample.items()}


def merge_unknown(declared: Spec, probed: Spec) -> Spec:
    """Fill the ``None`` dims of ``declared`` from a probed sample's spec."""
    out = dict(probed)
    for k, d in declared.items():
        if k in probed and d.fixed:
            out[k] = d
    return out
