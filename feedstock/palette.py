"""PASCAL VOC's colour map, class-index masks as 8-bit palette PNGs (indices kept), and pictures of masks:
overlays in colours apart from the image's, a legend of class names, the truth | prediction | overlay sheet."""
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


# ----- pictures of masks: overlays, a legend of class names, the truth | prediction | overlay sheet ---------
# Tol's "bright" and "vibrant" qualitative colours (RGB): saturated, told apart by colour-blind readers too.
# They are drawn over a grey copy of the image, so no class colour can be mistaken for the image's own.
CLASS_RGB = ((238, 102, 119), (68, 119, 170), (34, 136, 51), (204, 187, 68), (102, 204, 238), (170, 51, 119),
             (238, 119, 51), (0, 153, 136), (51, 34, 136), (204, 51, 17))
IGNORE_BGR = (255, 255, 255)
ALPHA = 0.55  # weight of a class colour over the grey image
SIDE = 160  # longest side of a sheet cell, pixels
HEAD = 22  # column titles and captions, pixels


def class_bgr(k: int, ignore_label: int = 255) -> Tuple[int, int, int]:
    """The overlay colour of class ``k`` as BGR: black for the background (0), white for the ignore
    label, else the qualitative colours in turn (VOC's colour map beyond them)."""
    if k == ignore_label:
        return IGNORE_BGR
    if k == 0:
        return 0, 0, 0
    r, g, b = CLASS_RGB[k - 1] if k - 1 < len(CLASS_RGB) else tuple(_voc()[3 * k:3 * k + 3])
    return b, g, r


def _colours(ignore_label: int) -> np.ndarray:
    return np.array([class_bgr(k, ignore_label) for k in range(256)], np.float32)


def _grey(image: np.ndarray) -> np.ndarray:
    """A CHW image (BGR, grey or float, as sources give them) or an HW one as a grey HWC BGR float picture."""
    x = np.asarray(image)
    x = x[None] if x.ndim == 2 else x
    x = x.astype(np.float32)
    if np.asarray(image).dtype != np.uint8:  # float data: stretched to 0-255 for the eye
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-9) * 255
    luma = np.tensordot(np.array([0.114, 0.587, 0.299], np.float32), x[:3], axes=1) if len(x) >= 3 else x[0]
    return np.repeat(luma[..., None], 3, axis=2)


def overlay(image: np.ndarray, mask: np.ndarray, ignore_label: int = 255) -> np.ndarray:
    """HWC BGR uint8: the CHW image in grey with its mask blended in a colour per class (background left
    clear), region borders drawn in the full class colour so a mask off by a pixel shows."""
    m = np.asarray(mask).reshape(np.shape(mask)[-2:])
    colours = _colours(ignore_label)
    pic = _grey(image)
    labelled = (m != 0)[..., None]
    blended = np.where(labelled, (1 - ALPHA) * pic + ALPHA * colours[m], pic)
    edge = np.zeros(m.shape, bool)
    edge[:, 1:] |= m[:, 1:] != m[:, :-1]
    edge[1:, :] |= m[1:, :] != m[:-1, :]
    edge &= m != 0
    blended[edge] = colours[m[edge]]
    return blended.round().astype(np.uint8)


def mask_picture(mask: np.ndarray, ignore_label: int = 255) -> np.ndarray:
    """HWC BGR uint8: each class in its overlay colour on black."""
    m = np.asarray(mask).reshape(np.shape(mask)[-2:])
    return _colours(ignore_label)[m].astype(np.uint8)


def _cell(pic: Optional[np.ndarray], text: str) -> np.ndarray:
    import cv2

    cell = np.full((SIDE + HEAD, SIDE, 3), 32, np.uint8)
    if pic is not None:
        h, w = pic.shape[:2]
        scale = SIDE / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        pic = cv2.resize(pic, size, interpolation=cv2.INTER_NEAREST)  # nearest: class borders stay sharp
        top, left = (SIDE - pic.shape[0]) // 2, (SIDE - pic.shape[1]) // 2
        cell[top:top + pic.shape[0], left:left + pic.shape[1]] = pic
    cv2.putText(cell, text[:24], (4, SIDE + HEAD - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                cv2.LINE_AA)
    return cell


def legend(classes: Sequence[int], names: Optional[Sequence[str]], width: int, ignore_label: int = 255) -> np.ndarray:
    """A strip of colour swatches, each with its class index and name, wrapped to ``width`` pixels."""
    import cv2

    items = [f"{k} {names[k]}" if names is not None and 0 <= k < len(names) and names[k] != str(k) else
             (f"{k} ignore" if k == ignore_label else f"class {k}") for k in classes]
    slot = 14 + max((cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] for t in items), default=0) + 16
    per_row = max(1, (width - 8) // slot)
    rows = -(-len(items) // per_row)
    strip = np.full((8 + rows * 22, width, 3), 16, np.uint8)
    for i, (k, text) in enumerate(zip(classes, items)):
        r, c = divmod(i, per_row)
        x, y = 8 + c * slot, 8 + r * 22
        cv2.rectangle(strip, (x, y), (x + 12, y + 12), class_bgr(k, ignore_label), -1)
        cv2.rectangle(strip, (x, y), (x + 12, y + 12), (200, 200, 200), 1)
        cv2.putText(strip, text, (x + 18, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return strip


def segmentation_sheet(rows: Sequence[Tuple[np.ndarray, Optional[np.ndarray], np.ndarray]], *,
                       class_names: Optional[Sequence[str]] = None, captions: Optional[Sequence[str]] = None,
                       ignore_label: int = 255, gap: int = 4) -> np.ndarray:
    """One row per (image, truth mask or None, predicted mask): truth | prediction | prediction over the
    image, column titles on top and a legend of the classes present at the bottom (HWC BGR uint8)."""
    import cv2

    if not rows:
        raise ValueError("no images to draw")
    width = 3 * SIDE + 4 * gap
    head = np.full((HEAD + gap, width, 3), 16, np.uint8)
    for j, title in enumerate(("truth", "prediction", "prediction over image")):
        cv2.putText(head, title, (gap + j * (SIDE + gap) + 4, HEAD - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
    parts, present = [head], set()
    for i, (image, truth, pred) in enumerate(rows):
        name = captions[i] if captions is not None else f"#{i}"
        present |= set(np.unique(pred).tolist()) | (set(np.unique(truth).tolist()) if truth is not None else set())
        cells = [_cell(mask_picture(truth, ignore_label) if truth is not None else None,
                       name if truth is not None else f"{name}: no mask"),
                 _cell(mask_picture(pred, ignore_label), ""), _cell(overlay(image, pred, ignore_label), "")]
        line = np.full((SIDE + HEAD + gap, width, 3), 16, np.uint8)
        for j, cell in enumerate(cells):
            line[:SIDE + HEAD, gap + j * (SIDE + gap):gap + j * (SIDE + gap) + SIDE] = cell
        parts.append(line)
    parts.append(legend(sorted(present), class_names, width, ignore_label))
    return np.concatenate(parts, axis=0)


def write_segmentation_sheet(path: Union[str, "os.PathLike[str]"], rows: Sequence[Tuple[np.ndarray, Optional[np.ndarray], np.ndarray]],
                             **kwargs: object) -> Path:
    """:func:`segmentation_sheet` written as a PNG."""
    import cv2

    sheet = segmentation_sheet(rows, **kwargs)  # type: ignore[arg-type]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet):
        raise ValueError(f"cannot write the sheet {path}")
    return path
