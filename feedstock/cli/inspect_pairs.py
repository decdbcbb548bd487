"""``feedstock inspect`` for segmentation pairs: counts, a class-frequency table and an overlay contact sheet.

Pairs are named as everywhere else (the stream flags): an images folder with
``--masks`` (matched by stem), a pairs list file with ``--source-type pairs``
(``--root-folder`` prefix), or an image LMDB with ``--masks`` the label LMDB. Without ``--masks``, a folder holding ``images/`` and
``masks/``, or an images folder with a ``masks`` folder beside it, is taken as pairs.
"""
from __future__ import annotations

import argparse
import os
from collections import Counter
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import RecordError
from ..loaders.caffe_lmdb import release_env
from ..loaders.decode import IMAGE_EXTENSIONS
from ..loaders.lmdb_pairs import LmdbPairs
from ..loaders.pairs_source import PairsSource, open_pairs
from ..palette import legend, overlay
from ..stream import Stream
from .contact_sheet import contact_sheet, pick

MASK_FOLDERS = ("masks", "labels", "SegmentationClass")  # common names; PASCAL VOC's is the last
MASK_SUFFIXES = (".png", ".bmp")


def _first_images(folder: str, n: int = 20) -> List[str]:
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
    return names[:n]


def _masks_for(images: str, masks: str) -> bool:
    """True when ``masks`` is a folder holding the mask of one of the first images of ``images``
    (not all images need one: PASCAL VOC segments a subset of JPEGImages)."""
    if not (os.path.isdir(images) and os.path.isdir(masks)):
        return False
    stems = [os.path.splitext(name)[0] for name in _first_images(images)]
    return any(os.path.isfile(os.path.join(masks, stem + s)) for stem in stems for s in MASK_SUFFIXES)


def guess_pairs(path: str) -> Optional[Tuple[str, str]]:
    """(images, masks) of a pairs layout: PATH/images with PATH/<masks folder>, or PATH with a sibling
    <masks folder> (names in MASK_FOLDERS) that holds the mask of one of PATH's first images."""
    path = os.path.normpath(path)
    for name in MASK_FOLDERS:
        for images, masks in ((os.path.join(path, "images"), os.path.join(path, name)),
                              (path, os.path.join(os.path.dirname(path) or ".", name))):
            if os.path.normpath(masks) != os.path.normpath(images) and _masks_for(images, masks):
                return images, masks
    return None


def pairs_of(stream: Stream) -> Optional[Tuple[str, str]]:
    """(images, masks) when the stream names pairs (``--masks``, ``--source-type pairs``) or its source
    is a pairs layout found by itself; None otherwise."""
    if stream.source_type == "pairs" or stream.masks:
        return stream.source, stream.masks
    if stream.source_type != "auto":
        return None
    found = guess_pairs(stream.source)
    if found is not None:
        print(f"pairs: images {found[0]} with masks {found[1]} (a pairs layout; --masks chooses others)")
    return found


def run(stream: Stream, images: str, masks: str, args: argparse.Namespace) -> int:
    args.ignore_label = stream.ignore_label
    source = open_pairs(images, masks, root_folder=stream.root_folder, allow_missing=True)
    try:
        return _inspect(source, args)
    finally:
        if isinstance(source, LmdbPairs):
            release_env(source.images)
            release_env(source.labels)


def _inspect(source: PairsSource, args: argparse.Namespace) -> int:
    n = min(len(source), args.max_scan)
    pixels, images_with, sizes, bad = class_frequencies(source, n)
    print(f"{source!r}\nrecords: {len(source)}\nkeys: {source.key(0)} .. {source.key(len(source) - 1)}")
    if sizes:
        (h0, w0), (h1, w1) = min(sizes), max(sizes)
        print(f"image sizes (H x W): {len(sizes)} distinct, {h0}x{w0} .. {h1}x{w1}")
    print("\n".join(frequency_table(pixels, images_with, n - len(bad), args.ignore_label,
                                    names=args.class_names.split(",") if args.class_names else None)))
    if n < len(source):
        print(f"(first {n} of {len(source)} records; raise --max-scan)")
    for key, error in bad[:20]:
        print(f"unreadable pair {key}: {error}")
    if args.grid:
        indices = pick(len(source), args.samples, args.seed)
        tiles, captions = overlay_tiles(source, indices, args.ignore_label)
        sheet = with_legend(contact_sheet(tiles, captions), tiles, indices, source, args)
        if not cv2.imwrite(args.grid, sheet):
            raise ValueError(f"cannot write the grid image {args.grid!r} (unknown extension?)")
        print(f"grid of {len(tiles)} pairs (mask over the image in grey, a colour per class) written to {args.grid} "
              f"({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


def class_frequencies(source: PairsSource, n: int):
    """Pixels per class, images holding each class, distinct (H, W) sizes, and the unreadable (key, error)."""
    pixels: Counter = Counter()
    images_with: Counter = Counter()
    sizes = set()
    bad: List[Tuple[str, str]] = []
    for i in range(n):
        try:
            mask = source[i]["mask"]
        except RecordError as e:
            bad.append((source.key(i), str(e)))
            continue
        counts = np.bincount(mask.ravel(), minlength=1)
        present = np.flatnonzero(counts)
        pixels.update(dict(zip(present.tolist(), counts[present].tolist())))
        images_with.update(present.tolist())
        sizes.add(tuple(mask.shape[1:]))
    return pixels, images_with, sorted(sizes), bad


def frequency_table(pixels: Counter, images_with: Counter, n_images: int, ignore_label: int,
                    names: Optional[Sequence[str]] = None) -> List[str]:
    """The class-frequency table: class, name, pixels, share of pixels, images holding it."""
    total = sum(pixels.values()) or 1
    lines = [f"classes: {len(pixels)} distinct over {n_images} masks ({total} pixels)",
             f"  {'class':>5}  {'name':<12} {'pixels':>12} {'share':>7}  images"]
    for k in sorted(pixels):
        name = "(ignore)" if k == ignore_label else (names[k] if names and k < len(names) else "")
        lines.append(f"  {k:>5}  {name:<12} {pixels[k]:>12} {100 * pixels[k] / total:>6.2f}%  {images_with[k]}")
    return lines


def with_legend(sheet: np.ndarray, tiles: Sequence[Optional[np.ndarray]], indices: Sequence[int],
                source: PairsSource, args: argparse.Namespace) -> np.ndarray:
    """The sheet with a legend of the classes its masks hold (names from --class-names) under it."""
    present: set = set()
    for tile, i in zip(tiles, indices):
        if tile is not None:
            present |= set(np.unique(source[i]["mask"]).tolist())
    names = args.class_names.split(",") if args.class_names else None
    return np.concatenate([sheet, legend(sorted(present), names, sheet.shape[1], args.ignore_label)], axis=0)


def overlay_tiles(source: PairsSource, indices: Sequence[int],
                  ignore_label: int) -> Tuple[List[Optional[np.ndarray]], List[str]]:
    tiles: List[Optional[np.ndarray]] = []
    captions: List[str] = []
    for i in indices:
        try:
            sample = source[i]
        except RecordError:
            tiles.append(None)
            captions.append(f"#{i} unreadable")
            continue
        tiles.append(overlay(sample["data"], sample["mask"], ignore_label).transpose(2, 0, 1))
        present = np.unique(sample["mask"]).tolist()
        captions.append(f"#{i} " + ",".join(map(str, present)))
    return tiles, captions
