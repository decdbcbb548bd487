"""Resize with DIGITS' four modes (squash, crop, fill, half_crop) on OpenCV's resizer.

Geometry follows DIGITS ``digits/utils/image.py::resize_image``: its Python 2
``round`` (half away from zero) for sizes and crop starts, the +1 parity
adjustment of the padded side in ``fill`` and ``half_crop``, and uniform noise
in [0, 254] for padding (drawn from ``rng`` for each band; DIGITS reused one
noise block for both ends). Pixels come from ``cv2.resize`` (INTER_LINEAR by
default, Caffe's resizer; DIGITS used scipy's imresize), masks always
nearest-neighbour and padded with ``mask_fill``.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import cv2
import numpy as np

from ._aligned import Geometric, parse_size
from .base import to_chw, to_hwc
from .pad import check_fill, paste

MODES = ("squash", "crop", "fill", "half_crop")
INTERPOLATIONS = {
    cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA,
    cv2.INTER_LANCZOS4, cv2.INTER_LINEAR_EXACT, cv2.INTER_NEAREST_EXACT,
}


def round_half_up(x: float) -> int:
    """Python 2's ``int(round(x))`` for x >= 0 (DIGITS ran on Python 2; Python 3 rounds half to even)."""
    return int(math.floor(x + 0.5))


def resize_chw(x: np.ndarray, h: int, w: int, interpolation: int) -> np.ndarray:
    """``cv2.resize`` of a CHW image to h x w (HWC for OpenCV; free when the memory is HWC)."""
    if x.shape[1:] == (h, w):
        return x
    return to_chw(cv2.resize(to_hwc(x), (w, h), interpolation=interpolation))


class Plan(NamedTuple):
    """Resize to (rh, rw), then place at (top, left) in the h x w output (negative = cropped)."""

    rh: int
    rw: int
    top: int
    left: int


def plan(mode: str, H: int, W: int, h: int, w: int) -> Plan:
    """DIGITS' resize geometry for an H x W input and an h x w output."""
    wr, hr = W / w, H / h
    if (H, W) == (h, w) or mode == "squash" or wr == hr:
        return Plan(h, w, 0, 0)
    if mode == "crop":  # cover the target, keep aspect, centre-crop the long side
        rh, rw = (h, round_half_up(W / hr)) if wr > hr else (round_half_up(H / wr), w)
    elif mode == "fill":  # fit inside, keep aspect; the padded side gets even margins
        if wr > hr:
            rh, rw = round_half_up(H / wr), w
            rh += (h - rh) % 2
        else:
            rh, rw = h, round_half_up(W / hr)
            rw += (w - rw) % 2
    else:  # half_crop: average ratio, crop the too-long side, pad the too-short one
        r = (wr + hr) / 2.0
        rh, rw = round_half_up(H / r), round_half_up(W / r)
        if wr > hr:
            rh += (h - rh) % 2
        else:
            rw += (w - rw) % 2
    rh, rw = max(rh, 1), max(rw, 1)
    return Plan(rh, rw, _start(rh, h), _start(rw, w))


def _start(resized: int, target: int) -> int:
    """Offset of the resized image in the output: ``-round((r - t) / 2)`` to crop, ``(t - r) // 2`` to pad."""
    if resized >= target:
        return -round_half_up((resized - target) / 2.0)
    return (target - resized) // 2


def _covers(p: Plan, h: int, w: int) -> bool:
    return p.top <= 0 and p.left <= 0 and p.top + p.rh >= h and p.left + p.rw >= w


def noise_canvas(rng: np.random.Generator, c: int, h: int, w: int, p: Plan) -> np.ndarray:
    """A uint8 canvas whose bands outside the pasted image hold DIGITS' noise (top, bottom, left, right)."""
    canvas = np.zeros((c, h, w), dtype=np.uint8)
    y0, y1 = max(p.top, 0), min(p.top + p.rh, h)
    x0, x1 = max(p.left, 0), min(p.left + p.rw, w)
    for rows, cols in ((slice(0, y0), slice(0, w)), (slice(y1, h), slice(0, w)),
                       (slice(y0, y1), slice(0, x0)), (slice(y0, y1), slice(x1, w))):
        band = canvas[:, rows, cols]
        if band.size:
            band[...] = rng.integers(0, 255, size=band.shape, dtype=np.uint8)
    return canvas


class Resize(Geometric):
    """Resize the image (and mask) to exactly h x w with a DIGITS mode.

    ``squash`` ignores the aspect ratio; ``crop`` covers the target and
    centre-crops; ``fill`` fits inside and pads the short side; ``half_crop``
    scales by the mean of the two ratios, crops one side and pads the other.
    Padding is uniform noise from ``rng`` (as DIGITS) unless ``fill`` is a number.
    """

    def __init__(self, h: int, w: int, mode: str = "squash", interpolation: int = cv2.INTER_LINEAR,
                 *, fill: Optional[float] = None, mask_fill: int = 0):
        self.h, self.w = parse_size((h, w), "(h, w)")
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {MODES}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation={interpolation!r} is not an OpenCV INTER_* flag")
        self.mode, self.interpolation = mode, int(interpolation)
        self.fill = None if fill is None else check_fill(fill, "fill")
        self.mask_fill = check_fill(mask_fill, "mask_fill")

    def draw(self, shape: Tuple[int, ...], rng: np.random.Generator) -> Tuple[Plan, Optional[np.ndarray]]:
        p = plan(self.mode, shape[1], shape[2], self.h, self.w)
        if self.fill is not None or _covers(p, self.h, self.w):
            return p, None
        return p, noise_canvas(rng, shape[0], self.h, self.w, p)

    def apply(self, x: np.ndarray, params: Tuple[Plan, Optional[np.ndarray]], *, is_mask: bool) -> np.ndarray:
        p, noise = params
        interp = cv2.INTER_NEAREST if is_mask else self.interpolation
        resized = resize_chw(x, p.rh, p.rw, interp)
        if _covers(p, self.h, self.w):
            return resized[:, -p.top : -p.top + self.h, -p.left : -p.left + self.w]
        if is_mask or noise is None:
            value = self.mask_fill if is_mask else self.fill
            canvas = np.full((x.shape[0], self.h, self.w), value, dtype=x.dtype)
        else:
            canvas = noise if x.dtype == np.uint8 else noise.astype(x.dtype)
        return paste(canvas, resized, p.top, p.left)

    def out_hw(self, h: Optional[int], w: Optional[int]) -> Tuple[Optional[int], Optional[int]]:
        return self.h, self.w

    def __repr__(self) -> str:
        return f"Resize({self.h}, {self.w}, mode={self.mode!r}, interpolation={self.interpolation})"
