"""Caffe's weight fillers: constant, gaussian, uniform, xavier, msra (host numpy, explicit rng)."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

import numpy as np
from numpy.typing import DTypeLike

FILLERS = ("constant", "gaussian", "uniform", "xavier", "msra")
_VARIANCE_NORMS = ("FAN_IN", "FAN_OUT", "AVERAGE")


def _fan(shape: Tuple[int, ...], norm: str) -> float:
    # Caffe: fan_in = count / num, fan_out = count / channels (blob axes 0 and 1).
    count = int(np.prod(shape))
    fan_in = count / shape[0]
    fan_out = count / shape[1] if len(shape) > 1 else count
    if norm == "FAN_IN":
        return fan_in
    if norm == "FAN_OUT":
        return fan_out
    return (fan_in + fan_out) / 2.0


def fill(shape: Tuple[int, ...], spec: Optional[Mapping[str, Any]], rng: np.random.Generator,
         dtype: DTypeLike = np.float32) -> np.ndarray:
    """An array of ``shape`` filled as Caffe's FillerParameter ``spec`` says (default constant 0)."""
    spec = dict(spec or {"type": "constant"})
    kind = spec.pop("type", "constant")
    norm = spec.pop("variance_norm", "FAN_IN")
    if kind not in FILLERS:
        raise ValueError(f"filler type={kind!r} must be one of {FILLERS}")
    if norm not in _VARIANCE_NORMS:
        raise ValueError(f"variance_norm={norm!r} must be one of {_VARIANCE_NORMS}")
    unknown = set(spec) - {"value", "mean", "std", "min", "max"}
    if unknown:
        raise ValueError(f"filler {kind!r} got unknown keys {sorted(unknown)}")
    if kind == "constant":
        out = np.full(shape, float(spec.get("value", 0.0)))
    elif kind == "gaussian":
        out = rng.normal(float(spec.get("mean", 0.0)), float(spec.get("std", 1.0)), size=shape)
    elif kind == "uniform":
        out = rng.uniform(float(spec.get("min", 0.0)), float(spec.get("max", 1.0)), size=shape)
    elif kind == "xavier":
        # Caffe's XavierFiller: uniform in [-sqrt(3/n), sqrt(3/n)].
        bound = np.sqrt(3.0 / _fan(shape, norm))
        out = rng.uniform(-bound, bound, size=shape)
    else:
        # Caffe's MSRAFiller: gaussian with std sqrt(2/n).
        out = rng.normal(0.0, np.sqrt(2.0 / _fan(shape, norm)), size=shape)
    return out.astype(dtype)
