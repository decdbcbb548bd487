"""Pairs whose mask is a threshold of the image, and the numerical alignment check every pairs test uses.

Image channels 0 and 1 are independent 0/255 block patterns, channel 2 is 0;
the mask is ``(c0 == 255) + 2 * (c1 == 255)`` (classes 0-3). After any chain of
rescale (bilinear image, nearest mask), pad, crop and mirror:

* padding is where channel 2 holds ``pad_value`` (the image never has it there),
  and there the label must be ``ignore_label``, and nowhere else;
* where channels 0 and 1 are both exactly 0 or 255 (every bilinear neighbour
  agrees) the label must equal the threshold of the transformed image.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from feedstock.fixtures.segdata import write_palette_png

PAD_VALUE = 200
IGNORE = 255


def threshold_pair(h: int, w: int, seed: int, block: int = 6) -> Tuple[np.ndarray, np.ndarray]:
    """(BGR HxWx3 uint8 image, HxW uint8 mask = its threshold classes)."""
    rng = np.random.default_rng(seed)
    bh, bw = -(-h // block), -(-w // block)
    image = np.zeros((h, w, 3), np.uint8)
    for c in (0, 1):
        blocks = rng.integers(0, 2, (bh, bw)).astype(np.uint8) * 255
        image[..., c] = np.kron(blocks, np.ones((block, block), np.uint8))[:h, :w]
    return image, threshold_classes(image.transpose(2, 0, 1))


def threshold_classes(chw: np.ndarray) -> np.ndarray:
    """The mask that the image encodes (classes 0-3) from CHW channels 0 and 1."""
    return ((chw[0] >= 128).astype(np.uint8) + 2 * (chw[1] >= 128)).astype(np.uint8)


def write_threshold_pairs(root: Path, sizes: Sequence[Tuple[int, int]], *, palette: bool = True,
                          spaces: bool = False) -> Tuple[Path, Path, List[Tuple[np.ndarray, np.ndarray]]]:
    """PNG images + masks (palette PNG or grey PNG) under root/images, root/masks; returns the arrays too."""
    images, masks = root / ("my images" if spaces else "images"), root / ("my masks" if spaces else "masks")
    os.makedirs(images, exist_ok=True)
    os.makedirs(masks, exist_ok=True)
    written = []
    for i, (h, w) in enumerate(sizes):
        image, mask = threshold_pair(h, w, seed=i)
        stem = f"p {i:03d}" if spaces else f"p{i:03d}"
        assert cv2.imwrite(str(images / f"{stem}.png"), image)
        if palette:
            write_palette_png(masks / f"{stem}.png", mask)
        else:
            assert cv2.imwrite(str(masks / f"{stem}.png"), mask)
        written.append((image, mask))
    return images, masks, written


def check_aligned(data: np.ndarray, label: np.ndarray, *, pad_value: float = PAD_VALUE,
                  ignore: int = IGNORE, mean: float = 0.0, min_checked: float = 0.6) -> Tuple[int, int]:
    """Assert alignment of one CHW image (after ``x - mean``) and its (1, H, W) label; (checked, padded) counts."""
    x = np.asarray(data, np.float64) + mean
    lab = np.asarray(label)[0]
    assert x.shape[1:] == lab.shape
    pad = x[2] == pad_value
    assert (x[2][~pad] == 0).all()
    np.testing.assert_array_equal(lab == ignore, pad)
    clear = ~pad & np.isin(x[0], (0, 255)) & np.isin(x[1], (0, 255))
    expected = threshold_classes(x.astype(np.int64).clip(0, 255))
    np.testing.assert_array_equal(lab[clear], expected[clear])
    real = int((~pad).sum())
    assert clear.sum() >= min_checked * real, f"only {clear.sum()} of {real} pixels were unambiguous"
    return int(clear.sum()), int(pad.sum())


def check_batch(batch: dict, **kwargs) -> Tuple[int, int]:
    """check_aligned over every row of a {data, label} batch; totals."""
    checked = padded = 0
    for data, label in zip(batch["data"], batch["label"]):
        c, p = check_aligned(data, label, **kwargs)
        checked, padded = checked + c, padded + p
    return checked, padded


def run_cli(*argv) -> tuple:
    """(exit status, stdout, stderr) of ``feedstock ARGV`` run in this process through the real entry point."""
    import contextlib
    import io

    from feedstock.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()
