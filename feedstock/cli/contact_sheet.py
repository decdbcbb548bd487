"""Contact sheets: tiles of samples (colour as stored, grey and float normalised per tile) with captions."""
from __future__ import annotations

import math
import os
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np

from ..protocols import Source

TILE = 128  # longest side of a tile, in pixels
BAND = 18  # caption band under each tile


def pick(n: int, count: int, seed: int) -> List[int]:
    """``count`` distinct record indices in increasing order, chosen by ``seed``."""
    if count <= 0:
        raise ValueError(f"--samples {count} must be positive")
    if n <= count:
        return list(range(n))
    rng = np.random.Generator(np.random.Philox(key=seed))
    return sorted(rng.choice(n, size=count, replace=False).tolist())


def to_display(data: np.ndarray) -> np.ndarray:
    """Any record as an HWC uint8 BGR picture: CHW images, grey, float maps and vectors."""
    x = np.asarray(data)
    if x.ndim == 3 and x.shape[1] == 1 and x.shape[2] == 1 or x.ndim == 1:
        flat = x.reshape(-1)
        side = math.ceil(math.sqrt(flat.size))
        x = np.pad(flat.astype(np.float64), (0, side * side - flat.size), constant_values=np.nan)
        x = x.reshape(1, side, side)
    elif x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"cannot draw a record of shape {np.shape(data)}")
    x = x[:3] if x.shape[0] in (3, 4) else x[:1]  # BGR(A) -> BGR; other channel counts: the first
    if x.dtype != np.uint8:
        x = normalise(x)
    hwc = np.ascontiguousarray(x.transpose(1, 2, 0))
    return cv2.cvtColor(hwc, cv2.COLOR_GRAY2BGR) if hwc.shape[2] == 1 else hwc


def normalise(x: np.ndarray) -> np.ndarray:
    """Min-max to 0-255 per tile (NaN padding drawn black)."""
    x = x.astype(np.float64)
    finite = x[np.isfinite(x)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    scaled = (x - lo) / (hi - lo) * 255.0 if hi > lo else np.full_like(x, 128.0)
    return np.nan_to_num(scaled, nan=0.0).round().astype(np.uint8)


def tile(data: Optional[np.ndarray], text: str) -> np.ndarray:
    """One cell: the picture scaled to fit TILE x TILE (nearest when enlarging) and a caption band."""
    pic = to_display(data) if data is not None else np.full((TILE, TILE, 3), (0, 0, 96), dtype=np.uint8)
    h, w = pic.shape[:2]
    scale = TILE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    pic = cv2.resize(pic, size, interpolation=cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA)
    cell = np.full((TILE + BAND, TILE, 3), 32, dtype=np.uint8)
    top, left = (TILE - pic.shape[0]) // 2, (TILE - pic.shape[1]) // 2
    cell[top:top + pic.shape[0], left:left + pic.shape[1]] = pic
    cv2.putText(cell, text[:20], (3, TILE + BAND - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1,
                cv2.LINE_AA)
    return cell


def contact_sheet(images: Sequence[Optional[np.ndarray]], captions: Sequence[str], gap: int = 4) -> np.ndarray:
    """Tiles in a near-square grid on a dark background."""
    if not images:
        raise ValueError("no samples to draw")
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    ch, cw = TILE + BAND, TILE
    sheet = np.full((rows * (ch + gap) + gap, cols * (cw + gap) + gap, 3), 16, dtype=np.uint8)
    for k, (img, text) in enumerate(zip(images, captions)):
        r, c = divmod(k, cols)
        y, x = gap + r * (ch + gap), gap + c * (cw + gap)
        sheet[y:y + ch, x:x + cw] = tile(img, text)
    return sheet


def sample_grid(source: Source, path: Union[str, "os.PathLike[str]"], *, count: int = 32, seed: int = 0,
                class_names: Optional[Sequence[str]] = None) -> str:
    """A contact sheet of ``count`` records of ``source`` as stored, each captioned with its label (and the
    class name), written as a PNG; returns the path."""
    indices = pick(len(source), count, seed)
    images, captions = [], []
    for i in indices:
        record = source[i]
        images.append(record["data"])
        label = int(np.asarray(record["label"]).reshape(-1)[0]) if "label" in record else None
        name = class_names[label] if class_names is not None and label is not None and 0 <= label < len(class_names) else ""
        captions.append(f"{label} {name}".strip() if label is not None else f"#{i}")
    out = os.fspath(path)
    if not cv2.imwrite(out, contact_sheet(images, captions)):
        raise ValueError(f"cannot write the sample grid {out!r} (unknown extension?)")
    return out
