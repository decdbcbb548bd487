"""ToCHW: users' HWC (or 2-D) arrays to the CHW layout the other transforms expect."""
from __future__ import annotations

import numpy as np

from ..spec import Sample, Spec
from ._aligned import ALIGNED
from .base import Transform, to_chw


class ToCHW(Transform):
    """HWC -> CHW view (no copy) of the image and mask; a 2-D (H, W) array becomes (1, H, W)."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        out = dict(sample)
        for field in ALIGNED:
            if field in sample:
                x = np.asarray(sample[field])
                if x.ndim not in (2, 3):
                    raise ValueError(f"ToCHW: {field!r} must be HWC or (H, W), got shape {x.shape}")
                out[field] = to_chw(x)
        return out

    def output_spec(self, spec: Spec) -> Spec:
        out = dict(spec)
        for field in ALIGNED:
            if field in spec:
                shape = spec[field].shape
                if len(shape) == 2:
                    shape = (*shape, 1)
                if len(shape) != 3:
                    raise ValueError(f"ToCHW: {field!r} spec must be HWC or (H, W), got {shape}")
                out[field] = spec[field].with_shape((shape[2], shape[0], shape[1]))
        return out

    def __repr__(self) -> str:
        return "ToCHW()"
