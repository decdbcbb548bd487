"""PASCAL VOC's colour map and class-index masks written as 8-bit palette PNGs (indices kept)."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np


@lru_cache(maxsize=1)
def _voc() -> Tuple[int, ...]:
    out: List[int] = []
    for index in range(256):
        rgb, c = [0, 0, 0], index
        for bit in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - bit)
            c >>= 3
        out += rgb
    return tuple(out)


def voc_palette() -> List[int]:
    """PASCAL VOC's colour map (the devkit's bit-interleaving of the index), 768 RGB values."""
    return list(_voc())


def write_palette_png(path: Union[str, "os.PathLike[str]"], mask: np.ndarray,
                      palette: Optional[Sequence[int]] = None) -> Path:
    """An (H, W) class-index mask as an 8-bit palette PNG (indices kept, VOC colours by default)."""
    from PIL import Image

    m = np.asarray(mask)
    if m.ndim != 2 or m.dtype.kind not in "iu" or (m.size and (m.min() < 0 or m.max() > 255)):
        raise ValueError(f"{path}: a palette PNG needs an (H, W) mask of indices 0..255, got {m.dtype} {m.shape}")
    image = Image.fromarray(np.ascontiguousarray(m, dtype=np.uint8), mode="P")
    image.putpalette(list(palette) if palette is not None else voc_palette())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
