"""Shared plumbing: field names, size parsing, and the base of geometric transforms.

Geometric transforms move pixels. They draw their random parameters once per
sample and apply the same parameters to every aligned field (the image
``"data"`` and, when present, the mask ``"mask"``), so a mask stays on the
pixels it marks. Every other field (``"label"``...) passes through untouched.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from ..spec import ArraySpec, Sample, Spec
from .base import Transform

IMAGE = "data"
MASK = "mask"
ALIGNED = (IMAGE, MASK)

SizeLike = Union[int, Tuple[int, int]]


def parse_size(size: SizeLike, name: str = "size") -> Tuple[int, int]:
    """An int or (h, w) pair of positive ints as (h, w); a clear ValueError otherwise."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        pair = (int(size), int(size))
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size):
            raise ValueError(f"{name}={size!r} must hold two integers")
        pair = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"{name}={size!r} must be an int or an (h, w) pair")
    if pair[0] <= 0 or pair[1] <= 0:
        raise ValueError(f"{name}={size!r} must be positive")
    return pair


def image_of(sample: Sample, who: str) -> np.ndarray:
    """The CHW image of a sample, checked to be 3-D."""
    if IMAGE not in sample:
        raise ValueError(f"{who} needs a {IMAGE!r} field (fields: {sorted(sample)})")
    x = np.asarray(sample[IMAGE])
    if x.ndim != 3:
        raise ValueError(f"{who}: {IMAGE!r} must be a CHW array, got shape {x.shape}")
    return x


def mask_of(sample: Sample, image: np.ndarray, who: str) -> Optional[np.ndarray]:
    """The (1, H, W) mask aligned with ``image``, or None when the sample has none."""
    if MASK not in sample:
        return None
    m = np.asarray(sample[MASK])
    if m.ndim != 3 or m.shape[1:] != image.shape[1:]:
        raise ValueError(
            f"{who}: {MASK!r} of shape {m.shape} is not aligned with {IMAGE!r} of shape {image.shape}"
        )
    return m


def spec_hw(spec: ArraySpec, who: str) -> Tuple[Optional[int], Optional[int], Optional[int]]:
    """(C, H, W) of a CHW spec; any may be None."""
    if len(spec.shape) != 3:
        raise ValueError(f"{who}: expected a CHW spec, got shape {spec.shape}")
    c, h, w = spec.shape
    return c, h, w


class Geometric(Transform):
    """Base of transforms that move pixels: one parameter draw, applied to image and mask.

    Subclasses implement :meth:`draw` (all randomness), :meth:`apply` (pure,
    ``is_mask`` picks nearest-neighbour / mask fill where relevant) and
    :meth:`out_hw` (output height and width from input ones, ``None`` = unknown).
    """

    def draw(self, shape: Tuple[int, ...], rng: np.random.Generator) -> Any:
        return None

    def apply(self, x: np.ndarray, params: Any, *, is_mask: bool) -> np.ndarray:
        raise NotImplementedError

    def out_hw(self, h: Optional[int], w: Optional[int]) -> Tuple[Optional[int], Optional[int]]:
        raise NotImplementedError

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        who = type(self).__name__
        x = image_of(sample, who)
        m = mask_of(sample, x, who)
        params = self.draw(x.shape, rng)
        out = dict(sample)
        out[IMAGE] = self.apply(x, params, is_mask=False)
        if m is not None:
            out[MASK] = self.apply(m, params, is_mask=True)
        return out

    def output_spec(self, spec: Spec) -> Spec:
        out = dict(spec)
        for field in ALIGNED:
            if field in spec:
                c, h, w = spec_hw(spec[field], type(self).__name__)
                out[field] = spec[field].with_shape((c, *self.out_hw(h, w)))
        return out
