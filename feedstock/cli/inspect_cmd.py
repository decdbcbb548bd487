"""``feedstock inspect PATH``: what a source holds (count, shapes, dtypes, labels, keys) and a contact sheet."""
from __future__ import annotations

import argparse
import collections
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .. import protocols
from ..caffe_pb import Datum
from ..errors import RecordError
from ..loaders import CaffeLmdb
from ..loaders.base import Source
from ..loaders.caffe_lmdb import release_env
from ..protocols import BatchReadable
from ..rng import sample_rng
from ..stream import Stream, add_stream_arguments, stream_from_args
from ..transforms import CenterCrop, Compose, Resize
from ..transforms.base import Transform
from ..writers.build.output import iter_db
from .build_lmdb import parse_size
from .contact_sheet import contact_sheet, pick

DESCRIPTION = """\
Open SOURCE as every command names a source (the shared stream flags: image
folder, Caffe list file, CSV table, Caffe LMDB, HDF5 file or list, or image + mask
pairs) and print the record count, field shapes and dtypes (declared and probed),
the label histogram, class names and the key range; for pairs, the pixels per
class. --grid writes a labelled contact sheet of samples after the stream's
transforms (TEST phase unless --phase train, to see the augmentations) and the
optional --resize/--crop: colour shown as stored (BGR, as OpenCV writes), grey and
float data normalised per tile to 0-255, vectors folded into squares.
"""
# stream keys that only steer a Loader: inspect reads records itself
LOADER_ONLY = ("batch_size", "shuffle", "drop_last", "workers", "prefetch", "on_error", "max_bad_fraction",
               "timeout", "start_method", "shard", "rank", "world_size")


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="summarise a source and draw a contact sheet",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", metavar="OUT.png", help="write a contact sheet of --samples records")
    p.add_argument("--samples", type=int, default=16, help="records in the grid (default 16)")
    p.add_argument("--resize", type=parse_size, metavar="HxW", help="resize samples before drawing")
    p.add_argument("--resize-mode", choices=("squash", "crop", "fill", "half_crop"), default="squash",
                   help="with --resize: squash (Caffe) or the DIGITS modes crop, fill, half_crop (default squash)")
    p.add_argument("--crop", type=int, metavar="N", help="centre-crop samples to NxN before drawing")
    p.add_argument("--phase", choices=("train", "test"), default="test",
                   help="with stream transform flags: draw the samples as this phase gives them (default test)")
    p.add_argument("--max-scan", type=int, default=1_000_000, help="records read for the label "
                   "histogram when labels are not indexed (default 1000000)")
    p.add_argument("--class-names", metavar="A,B,...", help="pairs: names of classes 0, 1, ... for the table")
    # the source and its transforms as every command names them; the seed picks the records shown
    add_stream_arguments(p, skip=LOADER_ONLY)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import inspect_pairs

    stream = stream_from_args(args, defaults={"seed": 0})
    args.seed = stream.seed
    if args.grid:  # checked before anything is read or written
        from ..outputs import check_file_output

        check_file_output(args.grid, flag="--grid", inputs=[stream.source, stream.masks])
        if not cv2.haveImageWriter(args.grid):
            raise ValueError(f"--grid {args.grid!r}: OpenCV cannot write this file type; use .png or .jpg")
    pairs = inspect_pairs.pairs_of(stream)
    if pairs is not None:
        return inspect_pairs.run(stream, *pairs, args)
    source = hdf5_labelled(stream) or stream.build_source()
    try:
        # no transform key set: no transforms (the stream hands records over as stored)
        return _inspect(source, args, stream.build_transforms(args.phase))
    finally:
        if isinstance(source, CaffeLmdb):
            release_env(source.path)  # py-lmdb allows one env per path and process


class LabelAs(Source):
    """An HDF5 source whose label dataset has another name, read with that dataset as ``label``."""

    def __init__(self, source: protocols.Source, column: str):
        self.source, self.column = source, column

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        record = dict(self.source[i])
        record["label"] = record.pop(self.column)
        return record

    def key(self, i: int) -> str:
        return self.source.key(i)

    def spec(self) -> dict:
        spec = dict(self.source.spec())
        spec["label"] = spec.pop(self.column)
        return spec

    def __repr__(self) -> str:
        return f"{self.source!r} (label dataset {self.column!r})"


def hdf5_labelled(stream: Stream) -> Optional[Source]:
    """An HDF5 stream with ``--label-column NAME``: datasets ``data`` and NAME, NAME read as the label
    (the stream reads HDF5 as Caffe's HDF5Data does, by the top names ``data`` and ``label``)."""
    from ..loaders import Hdf5

    if not stream.label_column or stream.label_column == "label" or stream.kind() != "hdf5":
        return None
    return LabelAs(Hdf5(stream.source, fields=("data", stream.label_column)), stream.label_column)


def _inspect(source: Source, args: argparse.Namespace, stream_transforms: Sequence[Transform]) -> int:
    labels = labels_of(source, args.max_scan)
    indices = pick(len(source), args.samples, args.seed)
    transform = Compose(list(stream_transforms) + list(make_transform(args).transforms))
    samples, failures = read_samples(source, indices, transform, args.seed)
    print("\n".join(describe(source, labels, samples, args.max_scan)))
    for index, error in failures:
        print(f"unreadable sample #{index}: {error}")
    if args.grid:
        names = getattr(source, "classes", None)
        captions = [caption(s, i, names) if s else f"#{i} unreadable" for i, s in zip(indices, samples)]
        sheet = contact_sheet([s["data"] if s else None for s in samples], captions)
        from ..outputs import atomic_file

        with atomic_file(args.grid) as tmp:
            if not cv2.imwrite(tmp, sheet):
                raise ValueError(f"cannot write the grid image {args.grid!r}")
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
    steps: List[Transform] = []
    if args.resize:
        steps.append(Resize(args.resize[0], args.resize[1], mode=args.resize_mode))
    if args.crop:
        steps.append(CenterCrop(args.crop))
    return Compose(steps)


def labels_of(source: Source, limit: int) -> Tuple[Optional[np.ndarray], int]:
    """(labels of the first ``limit`` records or None, how many records that covers)."""
    indexed = getattr(source, "labels", None)
    if isinstance(indexed, np.ndarray):
        return indexed, len(indexed)
    n = min(len(source), limit)
    if isinstance(source, CaffeLmdb):
        out: List[int] = []
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


def describe(source: Source, labels: Tuple[Optional[np.ndarray], int], samples: Sequence[Optional[dict]],
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
