"""Crops: RandomCrop (offsets drawn per sample) and CenterCrop (floor-division centring, as Caffe TEST)."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..errors import KeyedError
from ._aligned import Geometric, SizeLike, parse_size

CROP_FIXES = ("crop at most the image's size, or resize first with {new_height}/{new_width}",)


def check_fits(h: int, w: int, ch: int, cw: int, name: str = "size") -> None:
    """A clear error when a (ch, cw) crop does not fit an h x w image."""
    if ch > h or cw > w:
        fixes = CROP_FIXES if name == "crop_size" else ()
        raise KeyedError(f"{{{name}=({ch}, {cw})}} is larger than the image ({h}x{w})", fixes)


def random_offsets(rng: np.random.Generator, h: int, w: int, ch: int, cw: int) -> Tuple[int, int]:
    """Uniform (top, left) with both ends included; draws top first, then left (Caffe's order)."""
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return top, left


def center_offsets(h: int, w: int, ch: int, cw: int) -> Tuple[int, int]:
    """Caffe's TEST-phase offsets: ``(H - crop) // 2`` (an odd margin leaves the extra row below)."""
    return (h - ch) // 2, (w - cw) // 2


def crop_view(x: np.ndarray, top: int, left: int, ch: int, cw: int) -> np.ndarray:
    """The crop as a view (no copy) of a CHW array."""
    return x[:, top : top + ch, left : left + cw]


class _Crop(Geometric):
    def __init__(self, size: SizeLike):
        self.size = parse_size(size, "size")

    def out_hw(self, h: Optional[int], w: Optional[int]) -> Tuple[Optional[int], Optional[int]]:
        ch, cw = self.size
        if h is not None and w is not None:
            check_fits(h, w, ch, cw)
        elif (h is not None and ch > h) or (w is not None and cw > w):
            raise ValueError(f"size={self.size} is larger than the image ({h}x{w})")
        return ch, cw

    def apply(self, x: np.ndarray, params: Tuple[int, int], *, is_mask: bool) -> np.ndarray:
        return crop_view(x, params[0], params[1], *self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


class RandomCrop(_Crop):
    """Crop ``size`` (int or (h, w)) at a uniformly random offset; same offset for image and mask."""

    def draw(self, shape: Tuple[int, ...], rng: np.random.Generator) -> Tuple[int, int]:
        check_fits(shape[1], shape[2], *self.size)
        return random_offsets(rng, shape[1], shape[2], *self.size)


class CenterCrop(_Crop):
    """Crop ``size`` at the centre, offsets ``(H - h) // 2`` and ``(W - w) // 2``; draws nothing."""

    def draw(self, shape: Tuple[int, ...], rng: np.random.Generator) -> Tuple[int, int]:
        check_fits(shape[1], shape[2], *self.size)
        return center_offsets(shape[1], shape[2], *self.size)
