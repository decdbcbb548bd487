"""Occlude: zero a random quarter of the image (DIGITS' BlankSquareLayer example), per image or per batch item."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..spec import Sample, Spec
from ._aligned import IMAGE, image_of
from .base import Transform


def occlusion_offsets(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """(n, 2) offsets (top, left), top in [0, h//2), left in [0, w//2): one draw of n pairs."""
    return rng.integers(0, (h // 2, w // 2), size=(n, 2))


def occlude_batch(x: np.ndarray, rng: np.random.Generator, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Zero an (H//2) x (W//2) block at a random offset in each item of an (N, ..., H, W) batch.

    Offsets are drawn in [0, H//2) x [0, W//2), one pair per item (DIGITS drew
    one pair for the whole batch). ``out=x`` works in place; otherwise a copy
    is returned. Images smaller than 2 pixels on a side have no block to zero.
    """
    x = np.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"occlude_batch needs an (N, ..., H, W) batch, got shape {x.shape}")
    if out is None:
        out = x.copy()
    elif out is not x:
        if out.shape != x.shape:
            raise ValueError(f"out has shape {out.shape}, expected {x.shape}")
        np.copyto(out, x, casting="unsafe")
    h, w = x.shape[-2:]
    bh, bw = h // 2, w // 2
    if bh == 0 or bw == 0:
        return out
    for item, (top, left) in zip(out, occlusion_offsets(rng, len(x), h, w)):
        item[..., top : top + bh, left : left + bw] = 0
    return out


class Occlude(Transform):
    """Zero one random quarter-area block of the image (uint8 or float CHW); the mask is untouched."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        x = image_of(sample, "Occlude")
        out = dict(sample)
        out[IMAGE] = occlude_batch(x[None], rng)[0]
        return out

    def output_spec(self, spec: Spec) -> Spec:
        return dict(spec)

    def __repr__(self) -> str:
        return "Occlude()"
