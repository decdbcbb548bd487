"""Scale and ToFloat: value transforms of the image in float32."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..spec import Sample, Spec
from ._aligned import IMAGE, image_of
from .base import Transform
from .pad import check_fill


def _range(pair, name: str) -> Tuple[float, float]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{name}={pair!r} must be a (low, high) pair")
    lo, hi = (check_fill(v, name) for v in pair)
    if lo == hi:
        raise ValueError(f"{name}={pair!r} must have low != high")
    return float(lo), float(hi)


class Scale(Transform):
    """Multiply the image by ``factor``, or map ``from_range`` linearly onto ``to_range``; float32 out.

    ``Scale(to_range=(-1, 1))`` computes ``x / 127.5 - 1`` exactly: the map is
    ``(x - from_lo) / ((from_hi - from_lo) / (hi - lo)) + lo`` in float32.
    """

    def __init__(self, factor: Optional[float] = None, *, to_range: Optional[Tuple[float, float]] = None,
                 from_range: Tuple[float, float] = (0, 255)):
        if (factor is None) == (to_range is None):
            raise ValueError(f"give exactly one of factor= and to_range= (got {factor=}, {to_range=})")
        self.factor = None if factor is None else float(check_fill(factor, "factor"))
        self.to_range = None if to_range is None else _range(to_range, "to_range")
        self.from_range = _range(from_range, "from_range")

    def apply(self, x: np.ndarray) -> np.ndarray:
        f32 = np.float32
        x = x.astype(f32, copy=False)
        if self.factor is not None:
            return x * f32(self.factor)
        assert self.to_range is not None  # exactly one of factor and to_range is set
        (a, b), (lo, hi) = self.from_range, self.to_range
        shifted = x - f32(a) if a != 0 else x
        return shifted / f32((b - a) / (hi - lo)) + f32(lo)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        out = dict(sample)
        out[IMAGE] = self.apply(image_of(sample, "Scale"))
        return out

    def output_spec(self, spec: Spec) -> Spec:
        return _float_spec(spec)

    def __repr__(self) -> str:
        if self.factor is not None:
            return f"Scale({self.factor})"
        return f"Scale(to_range={self.to_range}, from_range={self.from_range})"


class ToFloat(Transform):
    """The image as float32 (values unchanged)."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        out = dict(sample)
        out[IMAGE] = image_of(sample, "ToFloat").astype(np.float32, copy=False)
        return out

    def output_spec(self, spec: Spec) -> Spec:
        return _float_spec(spec)

    def __repr__(self) -> str:
        return "ToFloat()"


def _float_spec(spec: Spec) -> Spec:
    out = dict(spec)
    if IMAGE in spec:
        out[IMAGE] = spec[IMAGE].with_dtype(np.float32)
    return out
