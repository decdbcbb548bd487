"""MeanSubtract: a mean image or per-channel mean values, subtracted in float32 (never in uint8)."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from ..loaders.strings import cut
from ..spec import Sample, Spec
from ._aligned import IMAGE, image_of, spec_hw
from .base import Transform


def mean_values(values: Union[float, Sequence[float]], name: str = "values") -> np.ndarray:
    """Per-channel means as float32 (1 value = every channel); a clear error when empty or not finite."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"{name}={values!r} must be one or more finite numbers") from None
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}={values!r} must be one or more finite numbers")
    return arr.astype(np.float32)


def broadcast_values(values: np.ndarray, channels: int, name: str = "values") -> np.ndarray:
    """(C,) float32 from 1 or C values, as Caffe replicates a single mean_value."""
    if values.size == 1:
        return np.repeat(values, channels)
    if values.size != channels:
        raise ValueError(
            f"{name} has {values.size} entries ({cut(str(values.tolist()))}); expected 1 or {channels} (the channels)"
        )
    return values


class MeanSubtract(Transform):
    """``x - mean`` in float32 on the image; ``mean`` (C, H, W) or ``values`` (1 or C numbers), not both.

    The mean image must match the image it meets; for Caffe's "full-size mean
    indexed at the crop offset" put this before the crop or use CaffeTransform.
    """

    def __init__(self, mean: Optional[np.ndarray] = None, values: Optional[Union[float, Sequence[float]]] = None):
        if (mean is None) == (values is None):
            raise ValueError(f"give exactly one of mean= and values= (got mean={_desc(mean)}, values={values!r})")
        self.mean: Optional[np.ndarray] = None
        self.values: Optional[np.ndarray] = None
        if mean is not None:
            m = np.asarray(mean, dtype=np.float32)
            if m.ndim != 3 or not np.all(np.isfinite(m)):
                raise ValueError(f"mean of shape {m.shape} must be a finite (C, H, W) array")
            self.mean = m
        elif values is not None:
            self.values = mean_values(values, "values")

    def _operand(self, shape: tuple) -> np.ndarray:
        if self.mean is not None:
            if self.mean.shape != tuple(shape):
                raise ValueError(f"mean has shape {self.mean.shape} but the image has shape {tuple(shape)}")
            return self.mean
        assert self.values is not None  # exactly one of mean and values is set
        return broadcast_values(self.values, shape[0])[:, None, None]

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        x = image_of(sample, "MeanSubtract")
        out = dict(sample)
        out[IMAGE] = np.subtract(x.astype(np.float32, copy=False), self._operand(x.shape))
        return out

    def output_spec(self, spec: Spec) -> Spec:
        out = dict(spec)
        if IMAGE in spec:
            c, h, w = spec_hw(spec[IMAGE], "MeanSubtract")
            if c is not None and h is not None and w is not None:
                self._operand((c, h, w))
            elif c is not None and self.values is not None:
                broadcast_values(self.values, c)
            out[IMAGE] = spec[IMAGE].with_dtype(np.float32)
        return out

    def __repr__(self) -> str:
        return f"MeanSubtract(mean={_desc(self.mean)}, values={None if self.values is None else self.values.tolist()})"


def _desc(mean: Optional[np.ndarray]) -> str:
    return "None" if mean is None else f"<array shape {np.shape(mean)}>"
