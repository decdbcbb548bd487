"""Shapes: a deterministic synthetic segmentation set (shapes over textured backgrounds, exact masks).

No small real segmentation set installs from the package registries our machines
reach (PyPI, Debian, npm: the registry lists hold tools and downloaders, not data),
so the set is generated on first use. Every image is a pure function of
``(seed, index)``; same seed, same library versions -> same bytes.

Layout written by :func:`make_shapes`::

    OUT/images/shape_00000.jpg   96x128 BGR JPEG (quality 95)
    OUT/masks/shape_00000.png    palette PNG, index = class id (see CLASSES)
    OUT/pairs.txt                ``images/x.jpg<TAB>masks/x.png`` lines (a pairs list file)

Classes: 0 background, 1 circle, 2 square, 3 triangle. Each image holds 1-3
shapes drawn without anti-aliasing, so the mask marks exactly the pixels the
shape painted (later shapes cover earlier ones in both). A shape's hue leans to
its class (circle red, square green, triangle blue, +-35 degrees), a cue a small
FCN can pick up within a few hundred iterations; its outline is the other cue.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .palette import voc_palette, write_palette_png
from .rng import sample_rng

CLASSES = ("background", "circle", "square", "triangle")
HEIGHT, WIDTH = 96, 128
_CLASS_HUE = {1: 0, 2: 60, 3: 120}  # OpenCV hue units (0-180): red, green, blue
SPLITS = {"train": (256, 0), "test": (64, 1)}  # name -> (n, seed)
VERSION = 2  # bump when the generator changes: the cache folder name carries it

Images = Tuple[Path, Path]


def _texture(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation HxWx3 uint8 background: gradient + stripes + noise."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = (rng.uniform(60, 190) + rng.uniform(-25, 25, size=3)).astype(np.float32)
    grad = rng.uniform(-0.4, 0.4, size=(2, 3)).astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
    stripes = 18 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    img = base + yy[..., None] * grad[0] + xx[..., None] * grad[1] + stripes[..., None]
    img += rng.normal(0, 8, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _colour(cls: int, rng: np.random.Generator) -> Tuple[int, int, int]:
    hue = (_CLASS_HUE[cls] + int(rng.integers(-35, 36))) % 180
    hsv = np.array([[[hue, int(rng.integers(150, 256)), int(rng.integers(110, 256))]]], np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _polygon(cls: int, cx: float, cy: float, r: float, rng: np.random.Generator) -> np.ndarray:
    corners = 4 if cls == 2 else 3
    start = rng.uniform(0, 2 * np.pi)
    angles = start + np.arange(corners) * 2 * np.pi / corners
    pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)
    return np.round(pts).astype(np.int32).reshape(-1, 1, 2)


def draw_sample(seed: int, index: int) -> Tuple[np.ndarray, np.ndarray]:
    """(BGR image HxWx3 uint8, class mask HxW uint8) of sample ``index``; pure in (seed, index)."""
    rng = sample_rng(seed, 0, index)
    image, mask = _texture(rng), np.zeros((HEIGHT, WIDTH), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, len(CLASSES)))
        r = float(rng.uniform(10, 26))
        cx, cy = float(rng.uniform(r * 0.5, WIDTH - r * 0.5)), float(rng.uniform(r * 0.5, HEIGHT - r * 0.5))
        colour = _colour(cls, rng)
        # LINE_8 (no anti-aliasing): image and mask get exactly the same pixels.
        if cls == 1:
            centre = (int(round(cx)), int(round(cy)))
            cv2.circle(image, centre, int(round(r)), colour, -1, cv2.LINE_8)
            cv2.circle(mask, centre, int(round(r)), cls, -1, cv2.LINE_8)
        else:
            pts = _polygon(cls, cx, cy, r * (1.25 if cls == 3 else 1.1), rng)
            cv2.fillPoly(image, [pts], colour, cv2.LINE_8)
            cv2.fillPoly(mask, [pts], cls, cv2.LINE_8)
    return image, mask


def palette_bytes() -> List[int]:
    """The 768-entry RGB palette of the mask PNGs: PASCAL VOC's colours of the classes, unlike VOC's
    palette 255 (ignore) white, every other index black."""
    flat = [0] * 768
    flat[:3 * len(CLASSES)] = voc_palette()[:3 * len(CLASSES)]
    flat[3 * 255:] = [255, 255, 255]
    return flat


def make_shapes(out_dir: str | os.PathLike, *, n: int = 256, seed: int = 0, quality: int = 95) -> Images:
    """Write ``n`` samples into ``out_dir/images`` + ``out_dir/masks`` (+ ``pairs.txt``); return both dirs."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n={n!r} must be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality={quality!r} must be in [1, 100]")
    out = Path(out_dir)
    images, masks = out / "images", out / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        image, mask = draw_sample(seed, i)
        stem = f"shape_{i:05d}"
        ok, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {stem}.jpg")
        (images / f"{stem}.jpg").write_bytes(jpg.tobytes())
        write_palette_png(masks / f"{stem}.png", mask, palette_bytes())
        lines.append(f"images/{stem}.jpg\tmasks/{stem}.png\n")
    (out / "pairs.txt").write_text("".join(lines))
    return images, masks


def default_root() -> Path:
    """The cache folder of the generated set (XDG cache convention, ``~/.cache`` otherwise)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "feedstock" / f"shapes-v{VERSION}"


def shapes_split(split: str = "train", root: Optional[str | os.PathLike] = None) -> Images:
    """(images, masks) of the ``train`` (256, seed 0) or ``test`` (64, seed 1) split, generated on first use.

    Generation goes to a temporary folder renamed into place, so concurrent first
    uses never see a half-written split.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} must be one of {sorted(SPLITS)}")
    target = Path(root) if root is not None else default_root()
    final = target / split
    if not final.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        n, seed = SPLITS[split]
        tmp = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=target))
        try:
            make_shapes(tmp, n=n, seed=seed)
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():  # lost a race only if the winner's folder is there
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final / "images", final / "masks"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m feedstock.segdata [ROOT]``: generate both splits and print where they are."""
    parser = argparse.ArgumentParser(prog="python -m feedstock.segdata", description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=None, help=f"target folder (default {default_root()})")
    args = parser.parse_args(argv)
    for split in SPLITS:
        images, masks = shapes_split(split, args.root)
        print(f"{split}: {images} {masks} ({len(os.listdir(images))} pairs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
