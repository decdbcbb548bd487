"""``feedstock inspect PATH``: what a source holds (count, shapes, dtypes, labels, keys) and a contact sheet."""
from __future__ import annotations

import argparse
import collections
import math
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import RecordError
from ..caffe_pb import Datum
from ..loaders import CaffeLmdb, open_source
from ..loaders.caffe_lmdb import release_env
from ..loaders.base import Source
from ..protocols import BatchReadable
from ..rng import sample_rng
from ..transforms import CenterCrop, Compose, Resize
from ..writers.build_output import iter_db
from .build_lmdb import parse_size

DESCRIPTION = """\
Open PATH the way 'feedstock.loaders.open_source' guesses it (image folder, Caffe
list file, CSV table, Caffe LMDB, HDF5 file or list) and print the record count,
field shapes and dtypes (declared and probed), the label histogram, class names
and the key range. --grid writes a labelled contact sheet of samples after the
optional --resize/--crop: colour shown as stored (BGR, as OpenCV writes), grey and
float data normalised per tile to 0-255, vectors folded into squares.
"""
TILE = 128  # longest side of a tile, in pixels
BAND = 18  # caption band under each tile


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="summarise a source and draw a contact sheet",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="PATH", help="image folder, list file, .csv, LMDB, .h5 or HDF5 list")
    p.add_argument("--root", help="list files: prefix of every image path")
    p.add_argument("--grid", metavar="OUT.png", help="write a contact sheet of --samples records")
    p.add_argument("--samples", type=int, default=16, help="records in the grid (default 16)")
    p.add_argument("--seed", type=int, default=0, help="which records the grid shows (default 0)")
    p.add_argument("--resize", type=parse_size, metavar="HxW", help="resize samples before drawing")
    p.add_argument("--resize-mode", choices=("squash", "crop", "fill", "half_crop"), default="squash")
    p.add_argument("--crop", type=int, metavar="N", help="centre-crop samples to NxN before drawing")
    p.add_argument("--max-scan", type=int, default=1_000_000, help="records read for the label "
                   "histogram when labels are not indexed (default 1000000)")
    from .inspect_pairs import add_pairs_arguments

    add_pairs_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import inspect_pairs

    if inspect_pairs.wants_pairs(args):
        return inspect_pairs.run(args)
    kwargs = {"root": args.root} if args.root else {}
    source = open_source(args.path, **kwargs)
    try:
        return _inspect(source, args)
    finally:
        if isinstance(source, CaffeLmdb):
            release_env(source.path)  # py-lmdb allows one env per path and process


def _inspect(source: Source, args: argparse.Namespace) -> int:
    labels = labels_of(source, args.max_scan)
    indices = pick(len(source), args.samples, args.seed)
    transform = make_transform(args)
    samples, failures = read_samples(source, indices, transform, args.seed)
    print("\n".join(describe(source, labels, samples, args.max_scan)))
    for index, error in failures:
        print(f"unreadable sample #{index}: {error}")
    if args.grid:
        names = getattr(source, "classes", None)
        captions = [caption(s, i, names) if s else f"#{i} unreadable" for i, s in zip(indices, samples)]
        sheet = contact_sheet([s["data"] if s else None for s in samples], captions)
        if not cv2.imwrite(args.grid, sheet):
            raise ValueError(f"cannot write the grid image {args.grid!r} (unknown extension?)")
        print(f"grid of {len(samples)} samples written to {args.grid} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


def read_samples(source: Source, indices: Sequence[int], transform: Compose,
                 seed: int) -> Tuple[List[Optional[dict]], List[Tuple[int, str]]]:
    """Transformed samples (None where unreadable) and the (index, error) of the unreadable ones."""
    samples: List[Optional[dict]] = []
    failures = []
    for i in indices:
        try:
            samples.append(transform(source[i], sample_rng(seed, 0, i)))
        except RecordError as e:
            samples.append(None)
            failures.append((i, str(e)))
    return samples, failures


def make_transform(args: argparse.Namespace) -> Compose:
    steps = []
    if args.resize:
        steps.append(Resize(args.resize[0], args.resize[1], mode=args.resize_mode))
    if args.crop:
        steps.append(CenterCrop(args.crop))
    return Compose(steps)


def pick(n: int, count: int, seed: int) -> List[int]:
    """``count`` distinct record indices in increasing order, chosen by ``seed``."""
    if count <= 0:
        raise ValueError(f"--samples {count} must be positive")
    if n <= count:
        return list(range(n))
    rng = np.random.Generator(np.random.Philox(key=seed))
    return sorted(rng.choice(n, size=count, replace=False).tolist())


def labels_of(source: Source, limit: int) -> Tuple[Optional[np.ndarray], int]:
    """(labels of the first ``limit`` records or None, how many records that covers)."""
    indexed = getattr(source, "labels", None)
    if isinstance(indexed, np.ndarray):
        return indexed, len(indexed)
    n = min(len(source), limit)
    if isinstance(source, CaffeLmdb):
        out = []
        for _, value in iter_db(source.path):
            if len(out) >= n:
                break
            out.append(Datum.FromString(value).label)
        return np.asarray(out, dtype=np.int64), len(out)
    if "label" not in source.spec():
        return None, 0
    batch = source.read_batch(np.arange(n)) if isinstance(source, BatchReadable) else NotImplemented
    labels = [source[i]["label"] for i in range(n)] if batch is NotImplemented else batch["label"]
    values = [np.asarray(v).reshape(-1)[0] for v in labels]
    return np.asarray(values), n


def describe(source: Source, labels: Tuple[Optional[np.ndarray], int], samples: Sequence[dict],
             limit: int) -> List[str]:
    n = len(source)
    lines = [f"{source!r}", f"records: {n}"]
    if n:
        lines.append(f"keys: {source.key(0)} .. {source.key(n - 1)}")
    for name, spec in source.spec().items():
        shown = ", ".join(sorted({"x".join(map(str, np.shape(s[name]))) or "scalar"
                                  for s in samples if s and name in s}))
        declared = "x".join("?" if d is None else str(d) for d in spec.shape) or "scalar"
        lines.append(f"field {name!r}: {declared} {spec.dtype} (declared); in the samples: {shown or '-'}")
    classes = getattr(source, "classes", None)
    if classes:
        lines.append(f"classes ({len(classes)}): " + ", ".join(map(str, classes[:20]))
                     + (" ..." if len(classes) > 20 else ""))
    values, covered = labels
    if values is not None and len(values):
        if values.dtype.kind == "f" and np.all(values == np.round(values)):
            values = values.astype(np.int64)  # HDF5 labels are stored as floats
        counts = collections.Counter(values.tolist())
        scope = "" if covered >= n else f" (first {covered} of {n} records; raise --max-scan)"
        lines.append(f"labels: {len(counts)} distinct, {min(counts)}..{max(counts)}{scope}")
        lines += [f"  {k}: {counts[k]}" for k in sorted(counts)[:100]]
    return lines


def caption(sample: dict, index: int, names: Optional[Sequence[str]]) -> str:
    if "label" not in sample:
        return f"#{index}"
    label = np.asarray(sample["label"]).reshape(-1)
    value = label[0].item() if label.size == 1 else label.tolist()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    name = names[value] if names and isinstance(value, int) and 0 <= value < len(names) else None
    return f"{value} {name}" if name else f"{value}"


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
