"""Scale augmentation: Multiscale (letterbox to a square, binary masks) and RandomScale (aspect kept, class masks)."""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from ._aligned import Geometric
from .pad import check_fill, paste
from .resize import INTERPOLATIONS, resize_chw


class Placement(NamedTuple):
    """Resize the input to (h, w) and paste it at (top, left) in the SIZE x SIZE output."""

    h: int
    w: int
    top: int
    left: int


def _scaled(n: float) -> int:
    return max(int(math.floor(n + 0.5)), 1)


def check_scales(scales: Sequence[float]) -> Tuple[float, ...]:
    """A non-empty tuple of positive finite floats; a ValueError naming ``scales`` otherwise."""
    try:
        values = tuple(scales)
    except TypeError:
        raise ValueError(f"scales={scales!r} must be a non-empty sequence of positive numbers") from None
    if not values:
        raise ValueError(f"scales={scales!r} must be a non-empty sequence of positive numbers")
    for s in values:
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(s) or s <= 0:
            raise ValueError(f"scales={scales!r} must hold positive finite numbers, got {s!r}")
    return tuple(float(s) for s in values)


def scaled_size(h: int, w: int, s: float) -> Tuple[int, int]:
    """The (h, w) of an h x w image scaled by ``s``, rounded half up, at least 1."""
    return _scaled(h * s), _scaled(w * s)


class Multiscale(Geometric):
    """Scale augmentation for segmentation (image + mask).

    Geometry: resize keeping the aspect ratio so the long side is ``size``, pad
    the short side (centred) to ``size x size`` with ``fill`` (255 for images,
    ``mask_fill`` = 0 for masks), rescale that square by a scale drawn from
    ``scales``, then crop or pad it back to ``size x size`` at a uniformly random
    offset (the same for image and mask). Both resizes are composed into one
    ``cv2.resize`` of the original (same geometry, one interpolation instead of
    two). Draws: scale index, then vertical, then horizontal offset (offsets
    only when the scaled square differs from ``size``). Masks are resized
    nearest-neighbour and re-binarised (>= 128 -> 255, else 0).
    """

    def __init__(self, size: int, scales: Sequence[float] = (0.6, 1.0, 1.4), *, fill: float = 255,
                 mask_fill: int = 0, interpolation: int = cv2.INTER_LINEAR):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
            raise ValueError(f"size={size!r} must be a positive integer")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation={interpolation!r} is not an OpenCV INTER_* flag")
        self.size, self.scales = int(size), check_scales(scales)
        self.fill, self.mask_fill = check_fill(fill, "fill"), check_fill(mask_fill, "mask_fill")
        self.interpolation = int(interpolation)

    def draw(self, shape: Tuple[int, ...], rng: np.random.Generator) -> Placement:
        H, W = shape[1], shape[2]
        n = self.size
        s = self.scales[int(rng.integers(0, len(self.scales)))]
        # letterbox: long side -> n, short side centred in the n x n square
        h1, w1 = _scaled(H * n / max(H, W)), _scaled(W * n / max(H, W))
        # the square rescaled by s, the image centred in it
        sq, h2, w2 = _scaled(n * s), _scaled(h1 * s), _scaled(w1 * s)
        top, left = (sq - h2) // 2, (sq - w2) // 2
        if sq != n:  # the square's corner in the output: -offset to crop, +offset to pad
            dy = int(rng.integers(0, abs(sq - n) + 1))
            dx = int(rng.integers(0, abs(sq - n) + 1))
            sign = -1 if sq > n else 1
            top, left = top + sign * dy, left + sign * dx
        return Placement(h2, w2, top, left)

    def apply(self, x: np.ndarray, params: Placement, *, is_mask: bool) -> np.ndarray:
        interp = cv2.INTER_NEAREST if is_mask else self.interpolation
        resized = resize_chw(x, params.h, params.w, interp)
        if is_mask:
            resized = np.where(resized >= 128, 255, 0).astype(x.dtype)
        canvas = np.full((x.shape[0], self.size, self.size), self.mask_fill if is_mask else self.fill,
                         dtype=x.dtype)
        return paste(canvas, resized, params.top, params.left)

    def out_hw(self, h: Optional[int], w: Optional[int]) -> Tuple[Optional[int], Optional[int]]:
        return self.size, self.size

    def __repr__(self) -> str:
        return f"Multiscale(size={self.size}, scales={self.scales})"


class RandomScale(Geometric):
    """Rescale by a factor drawn from ``scales`` (one ``rng.integers`` draw), aspect kept.

    For segmentation with class masks (FCN / DeepLab style multiscale training):
    the image is resized with ``interpolation`` (bilinear by default), the mask
    nearest-neighbour, so every mask value is one of the input's class ids. The
    mask uses ``INTER_NEAREST_EXACT`` (pixel centres aligned, as the bilinear image
    is; plain ``INTER_NEAREST`` is shifted by up to half a source pixel), so a mask
    pixel is always one of the image pixel's bilinear neighbours, the one with the
    largest weight. The output is ``scaled_size(H, W, s)``; follow with Pad +
    RandomCrop for fixed shapes.
    """

    def __init__(self, scales: Sequence[float] = (0.6, 1.0, 1.4), *, interpolation: int = cv2.INTER_LINEAR):
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation={interpolation!r} is not an OpenCV INTER_* flag")
        self.scales = check_scales(scales)
        self.interpolation = int(interpolation)

    def draw(self, shape: Tuple[int, ...], rng: np.random.Generator) -> Tuple[int, int]:
        s = self.scales[int(rng.integers(0, len(self.scales)))]
        return scaled_size(shape[1], shape[2], s)

    def apply(self, x: np.ndarray, params: Tuple[int, int], *, is_mask: bool) -> np.ndarray:
        return resize_chw(x, params[0], params[1], cv2.INTER_NEAREST_EXACT if is_mask else self.interpolation)

    def out_hw(self, h: Optional[int], w: Optional[int]) -> Tuple[Optional[int], Optional[int]]:
        if h is None or w is None or len(set(self.scales)) != 1:
            return None, None
        return scaled_size(h, w, self.scales[0])

    def __repr__(self) -> str:
        return f"RandomScale(scales={self.scales})"
