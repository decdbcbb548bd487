"""build-lmdb for segmentation pairs: an image LMDB and a label LMDB with the same keys, as Caffe FCN stores them.

``OUT/images_lmdb`` holds the images as ``convert_imageset`` writes them (raw CHW
BGR uint8 Datums, or with ``encoded`` the file bytes); ``OUT/labels_lmdb`` holds
each mask as a raw single-channel uint8 Datum (class ids unchanged). Keys are
``%08d_<image path>`` in both (the path relative to the images folder, or as
written in the pairs list), so both databases list the same keys in the same
order. A pair that cannot be read (no mask, mask size differs, undecodable) is
skipped and listed in ``OUT/skipped.txt`` (its number left as a gap, as
convert_imageset does), or fatal with ``strict``. The build goes to
``OUT.partial`` and is renamed to ``OUT`` when complete. :func:`check_pairs`
is what ``feedstock verify`` runs on such a folder.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import Callable, Dict, Generator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ...caffe_pb import array_to_datum, encoded_datum
from ...errors import RecordError
from ...loaders.decode import read_bytes
from ...loaders.lmdb_pairs import LmdbPairs
from ...loaders.pairs import Pairs
from ...loaders.pairs_list import read_pairs_list
from ...pipeline.ordered import ordered_map
from ...transforms.resize import resize_chw
from .output import checksum_record, iter_db, partial_path, publish, remove_paths
from .safety import check_not_a_record, check_not_source, check_records_outside
from ..lmdb_writer import LmdbWriter, is_lmdb

IMAGES, LABELS = "images_lmdb", "labels_lmdb"
CHUNK = 16  # pairs per pool task: enough work to hide the task round trip
Progress = Optional[Callable[[int], None]]
PathPair = Tuple[str, str]
Encoded = Tuple[bytes, bytes, Dict[int, int]]  # image Datum, label Datum, pixels per class
Failed = Tuple[str, str, str]  # ("error", key, message)
ChunkResult = List[Union[Encoded, Failed]]


@dataclass(frozen=True)
class PairsBuildOptions:
    """How to build: ``masks`` folder (folder SRC) or ``root`` (pairs list SRC), decode and resize, order."""

    masks: str = ""
    root: str = ""
    color: bool = True
    resize: Tuple[int, int] = (0, 0)
    encoded: bool = False
    shuffle: bool = False
    seed: int = 0
    strict: bool = False
    txn_size: int = 1000
    workers: int = 0  # encoding processes; 0 = in this process
    start_method: str = "auto"

    def __post_init__(self) -> None:
        h, w = self.resize
        if (h > 0) != (w > 0) or h < 0 or w < 0:
            raise ValueError(f"resize={self.resize} needs both a positive height and width (or neither)")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers={self.workers!r} must be a non-negative integer")
        if self.encoded and h:
            raise ValueError("encoded=True keeps the files' bytes: resizing them is not supported for pairs")


@dataclass
class PairsBuildReport:
    out: str
    written: int = 0
    skipped: List[str] = field(default_factory=list)
    classes: Counter = field(default_factory=Counter)  # mask pixels per class id


def plan_pairs(src: str, options: PairsBuildOptions) -> Tuple[List[str], Pairs]:
    """(key names, source) in build order: names relative to the images folder or as in the list."""
    if os.path.isdir(src):
        if not options.masks:
            raise ValueError(f"--masks (the masks folder) is required with the images folder {src!r}")
        source = Pairs(src, options.masks, color=options.color, allow_missing=not options.strict)
        names = [os.path.relpath(source.paths(i)[0], src) for i in range(len(source))]
    elif os.path.isfile(src):
        if options.masks:
            raise ValueError(f"--masks must not be given with the pairs list {src!r} (it names both paths)")
        relative = read_pairs_list(src)
        source = Pairs([(options.root + a, options.root + b) for a, b in relative], color=options.color)
        names = [a for a, _ in relative]
    else:
        raise ValueError(f"SRC {src!r} is neither an images folder nor a pairs list file")
    return names, source


def _safe_plan(src: str, options: PairsBuildOptions, outputs: List[str]) -> Tuple[List[str], Pairs]:
    """plan_pairs after refusing outputs that are, hold or hide a source file (--force deletes outputs)."""
    for folder in (src, options.masks):
        if folder:
            check_not_source(folder, outputs)
    names, source = plan_pairs(src, options)
    records = [path for i in range(len(source)) for path in source.paths(i) if path]
    check_records_outside(records, outputs, src)
    check_not_a_record(records, outputs, src)
    return names, source


def encode_pair(pair: PathPair, options: PairsBuildOptions) -> Encoded:
    """(image Datum bytes, label Datum bytes, pixels per class) of one pair; RecordError names both files."""
    source = Pairs([pair], color=options.color)
    sample = source[0]
    image, mask = sample["data"], sample["mask"]
    if options.resize[0]:
        h, w = options.resize
        image = resize_chw(image, h, w, cv2.INTER_LINEAR)
        mask = resize_chw(mask, h, w, cv2.INTER_NEAREST_EXACT)
    if options.encoded:
        image_datum = encoded_datum(read_bytes(pair[0]), 0)
    else:
        image_datum = array_to_datum(np.ascontiguousarray(image), 0, encoded_false=True)
    label_datum = array_to_datum(np.ascontiguousarray(mask), 0, encoded_false=True)
    counts = np.bincount(mask.ravel(), minlength=1)
    present = np.flatnonzero(counts)
    classes = dict(zip(present.tolist(), counts[present].tolist()))
    return image_datum.SerializeToString(), label_datum.SerializeToString(), classes


def encode_chunk(pairs: Sequence[PathPair], options: PairsBuildOptions) -> ChunkResult:
    """encode_pair of each pair; a bad pair comes back as ("error", key, message) (exceptions with a
    two-argument constructor do not survive pickling between processes)."""
    out: ChunkResult = []
    for pair in pairs:
        try:
            out.append(encode_pair(pair, options))
        except RecordError as e:
            out.append(("error", e.key, str(e)))
    return out


def encoded_chunks(pairs: Sequence[PathPair], options: PairsBuildOptions) -> Generator[ChunkResult, None, None]:
    """encode_chunk of each CHUNK pairs, in order: in this process (workers=0) or a bounded window on a pool;
    close() stops the pool."""
    chunks = [pairs[k : k + CHUNK] for k in range(0, len(pairs), CHUNK)]
    yield from ordered_map(functools.partial(encode_chunk, options=options), chunks, workers=options.workers,
                          window=4 * options.workers, start_method=options.start_method,
                          name="feedstock-build-pairs")


def build_pairs(src: str, out: str, options: PairsBuildOptions, *, force: bool = False,
                progress: Progress = None) -> PairsBuildReport:
    """Write OUT/images_lmdb and OUT/labels_lmdb (via OUT.partial); see the module docstring."""
    src, out = os.fspath(src), os.fspath(out)
    if os.path.exists(out) and not force:
        raise FileExistsError(f"{out!r} exists; pass --force to replace it")
    partial = partial_path(out)
    names, source = _safe_plan(src, options, [out, partial])
    order = np.arange(len(names))
    if options.shuffle:
        order = np.random.Generator(np.random.PCG64(options.seed)).permutation(len(names))
    remove_paths(partial)
    os.makedirs(partial)
    try:
        report = _write(partial, names, source, order, options, progress)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a failed build leaves nothing behind
        raise
    _finish(partial, out, report)
    return report


def _write(partial: str, names: List[str], source: Pairs, order: np.ndarray, options: PairsBuildOptions,
           progress: Progress) -> PairsBuildReport:
    report = PairsBuildReport(partial)
    indices = order.tolist()
    chunks = encoded_chunks([source.paths(i) for i in indices], options)
    with contextlib.closing(chunks), \
            LmdbWriter(os.path.join(partial, IMAGES), txn_size=options.txn_size) as images, \
            LmdbWriter(os.path.join(partial, LABELS), txn_size=options.txn_size) as labels:
        for line_id, (i, result) in enumerate(zip(indices, chain.from_iterable(chunks))):
            if result[0] == "error":
                if options.strict:
                    raise RecordError(str(result[1]), str(result[2])[len(str(result[1])) + 2 :])
                report.skipped.append(str(result[2]))
            else:
                image_bytes, label_bytes, classes = result
                images.put_datum(line_id, names[i], image_bytes)
                labels.put_datum(line_id, names[i], label_bytes)
                report.classes.update(classes)
                report.written += 1
            if progress is not None:
                progress(1)
    return report


def _finish(partial: str, out: str, report: PairsBuildReport) -> None:
    if report.skipped:
        with open(os.path.join(partial, "skipped.txt"), "w") as f:
            f.write("\n".join(report.skipped) + "\n")
    classes = {str(k): v for k, v in sorted(report.classes.items()) if v}
    with open(os.path.join(partial, "pairs.json"), "w") as f:
        json.dump({"format": "feedstock.pairs/1", "records": report.written, "skipped": len(report.skipped),
                   "class_pixels": classes, "images": IMAGES, "labels": LABELS}, f, indent=1)
    publish(partial, out)  # swaps a --force rebuild in, removing the old OUT only after
    report.out = out


def is_pairs_build(path: str) -> bool:
    """True for a folder holding images_lmdb and labels_lmdb."""
    return is_lmdb(os.path.join(path, IMAGES)) and is_lmdb(os.path.join(path, LABELS))


@dataclass
class PairsCheck:
    """What :func:`check_pairs` found."""

    images: str
    labels: str
    records: int = 0
    classes: Counter = field(default_factory=Counter)
    sha256: str = ""
    bad: List[str] = field(default_factory=list)


def check_pairs(images: str, labels: str, *, num_classes: Optional[int] = None, ignore_label: int = 255,
                progress: Progress = None) -> PairsCheck:
    """Both LMDBs key for key: equal key lists, every label a 1-channel uint8 Datum of its image's size,
    class ids in [0, num_classes) or ``ignore_label``; a sha256 over both databases' records."""
    result = PairsCheck(images, labels)
    digest = hashlib.sha256()
    for path in (images, labels):
        for key, value in iter_db(path):
            checksum_record(digest, key, value)
    result.sha256 = digest.hexdigest()
    try:
        source = LmdbPairs(images, labels)
    except ValueError as e:  # keys differ: the first difference is named
        result.bad.append(f"(databases): {e}")
        return result
    for i in range(len(source)):
        try:
            mask = source[i]["mask"]
        except RecordError as e:
            result.bad.append(str(e))
        else:
            counts = np.bincount(mask.ravel(), minlength=256)
            result.classes.update({k: int(v) for k, v in enumerate(counts.tolist()) if v})
            high = [k for k in np.flatnonzero(counts).tolist()
                    if num_classes is not None and k >= num_classes and k != ignore_label]
            if high:
                result.bad.append(f"{source.key(i)}: label classes {high} outside [0, {num_classes})")
        result.records += 1
        if progress is not None:
            progress(1)
    return result
