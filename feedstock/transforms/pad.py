"""Pad: grow an image to at least a size, centred, with a constant fill; plus the paste helper."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

from ._aligned import Geometric, SizeLike, parse_size


def check_fill(fill: float, name: str = "fill") -> float:
    if isinstance(fill, bool) or not isinstance(fill, (int, float, np.number)) or not math.isfinite(fill):
        raise ValueError(f"{name}={fill!r} must be a finite number")
    return fill


def paste(dst: np.ndarray, src: np.ndarray, top: int, left: int) -> np.ndarray:
    """Copy CHW ``src`` into ``dst`` with its corner at (top, left); parts outside ``dst`` are dropped."""
    y0, x0 = max(top, 0), max(left, 0)
    y1 = min(top + src.shape[1], dst.shape[1])
    x1 = min(left + src.shape[2], dst.shape[2])
    if y1 > y0 and x1 > x0:
        dst[:, y0:y1, x0:x1] = src[:, y0 - top : y1 - top, x0 - left : x1 - left]
    return dst


def centred_margins(h: int, w: int, th: int, tw: int) -> Tuple[int, int]:
    """(top, left) margins that centre an h x w image in th x tw; an odd margin puts the extra row/column last."""
    return max(th - h, 0) // 2, max(tw - w, 0) // 2


ANCHORS = ("centre", "top_left")


class Pad(Geometric):
    """Pad to at least ``size`` (int or (h, w)); never crops.

    ``anchor="centre"`` places the image at ``((H' - H) // 2, (W' - W) // 2)``, so an
    odd margin leaves the extra row at the bottom and the extra column at the right;
    ``anchor="top_left"`` pads below and to the right only (Caffe FCN/DeepLab
    segmentation layers; predictions crop back with ``[:H, :W]``). The image is
    filled with ``fill``, the mask with ``mask_fill`` (e.g. the ignore label).
    """

    def __init__(self, size: SizeLike, fill: float = 0, *, mask_fill: int = 0, anchor: str = "centre"):
        self.size = parse_size(size, "size")
        self.fill = check_fill(fill, "fill")
        self.mask_fill = check_fill(mask_fill, "mask_fill")
        if anchor not in ANCHORS:
            raise ValueError(f"anchor={anchor!r} must be one of {ANCHORS}")
        self.anchor = anchor

    def apply(self, x: np.ndarray, params: None, *, is_mask: bool) -> np.ndarray:
        h, w = x.shape[1:]
        th, tw = max(h, self.size[0]), max(w, self.size[1])
        if (th, tw) == (h, w):
            return x
        canvas = np.full((x.shape[0], th, tw), self.mask_fill if is_mask else self.fill, dtype=x.dtype)
        top, left = centred_margins(h, w, th, tw) if self.anchor == "centre" else (0, 0)
        return paste(canvas, x, top, left)

    def out_hw(self, h: Optional[int], w: Optional[int]) -> Tuple[Optional[int], Optional[int]]:
        return (
            None if h is None else max(h, self.size[0]),
            None if w is None else max(w, self.size[1]),
        )

    def __repr__(self) -> str:
        return f"Pad(size={self.size}, fill={self.fill}, mask_fill={self.mask_fill}, anchor={self.anchor!r})"
