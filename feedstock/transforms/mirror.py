"""Mirror: random horizontal flip, one draw per sample for image and mask."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

from ._aligned import Geometric


class Mirror(Geometric):
    """Flip left-right with probability ``p`` (one ``rng.random()`` draw per sample).

    The flip is a reversed-column view (no copy); the batch write copies it.
    """

    def __init__(self, p: float = 0.5):
        if not (isinstance(p, (int, float)) and math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"p={p!r} must be a probability in [0, 1]")
        self.p = float(p)

    def draw(self, shape: Tuple[int, ...], rng: np.random.Generator) -> bool:
        return bool(rng.random() < self.p)

    def apply(self, x: np.ndarray, params: bool, *, is_mask: bool) -> np.ndarray:
        return x[:, :, ::-1] if params else x

    def out_hw(self, h: Optional[int], w: Optional[int]) -> Tuple[Optional[int], Optional[int]]:
        return h, w

    def __repr__(self) -> str:
        return f"Mirror(p={self.p})"
