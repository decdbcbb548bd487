"""The plan of a build: which record goes to which database under which key, before any pixel is read.

A plan is a pure function of the source listing and (shuffle, seed, val_fraction,
shard): a resumed build and every shard of a job array recompute the same plan
and check its digest, so keys and order never depend on timing or worker count.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...loaders.base import Source
from ..lmdb_writer import caffe_key

IMAGE_KINDS = ("folder", "list")
TABLE_KINDS = ("csv", "hdf5")
KINDS = IMAGE_KINDS + TABLE_KINDS


@dataclass
class Listing:
    """Every record of a source in listing order: key name, label, and how to read it."""

    kind: str
    names: List[str]  # key suffix: path as in the list file, path relative to the folder, CSV id
    labels: np.ndarray  # int64 per record
    paths: Optional[List[str]] = None  # image files to open (images only)
    table: Optional[Source] = None  # record i of the listing = table[i] (tables only)
    class_names: Optional[List[str]] = None
    left_out: List[Tuple[str, str]] = field(default_factory=list)  # (file:line, reason) of bad table rows
    bad_rows: Dict[int, str] = field(default_factory=dict)  # listing index -> why: skipped when written

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class Split:
    """One output database: the listing indices in line order (line_id = position)."""

    name: str  # "" (OUT itself), "train" or "val"
    order: np.ndarray  # int64 listing indices
    lo: int = 0  # this shard's range of line ids [lo, hi)
    hi: int = -1
    digest: str = field(default="")

    def __post_init__(self) -> None:
        if self.hi < 0:
            self.hi = len(self.order)

    @property
    def db_dir(self) -> str:
        """Database directory relative to OUT."""
        return f"{self.name}_lmdb" if self.name else ""


def detect_kind(src: str) -> str:
    """The source kind of ``src`` as ``open_source`` guesses it; an LMDB is not a build source."""
    from ...loaders.open_source import guess_kind

    kind = guess_kind(src)
    if kind not in KINDS:
        raise ValueError(f"{src!r} is a {kind} database already; build-lmdb reads {', '.join(KINDS)} sources")
    return kind


def list_folder(root: str, exclude: Sequence[str] = (), classes: Optional[Sequence[str]] = None) -> Listing:
    """Class-per-subfolder images; names are paths relative to ``root`` (the key suffix).
    Folders in ``exclude`` (the build's own outputs) are never scanned; ``classes`` fixes the codes."""
    from ...loaders.image_folder import scan_image_folder

    classes, paths, labels = scan_image_folder(root, exclude=exclude, classes=classes)
    names = [os.path.relpath(p, root) for p in paths]
    return Listing("folder", names, np.asarray(labels, dtype=np.int64), paths=paths, class_names=classes)


def list_file(path: str, root: str, classes: Optional[Sequence[str]] = None) -> Listing:
    """A Caffe list file; names are the paths as written, files are ``root + path`` (Caffe);
    ``classes`` names its integer labels (a label outside them is an error)."""
    from ...loaders.list_file import check_list_labels, read_list_file

    names, labels = read_list_file(path)
    check_list_labels(path, names, labels, classes)
    return Listing("list", names, np.asarray(labels, dtype=np.int64), paths=[root + n for n in names],
                   class_names=None if classes is None else list(classes))


def list_table(path: str, kind: str, options: Any) -> Listing:
    """A CSV table or HDF5 file/list: one Datum per row, named by the row's id (CSV) or unnamed (HDF5).

    The label column (CSV ``target``, HDF5 ``label`` unless ``label_column``) must exist
    unless ``no_labels`` (every label 0); CSV class codes follow ``classes`` when given."""
    no_labels = bool(getattr(options, "no_labels", False))
    if kind == "csv":
        return list_csv(path, options.label_column, no_labels, getattr(options, "classes", None),
                        strict=bool(getattr(options, "strict", True)))
    from ...loaders.hdf5 import Hdf5

    if no_labels:
        table = Hdf5(path, fields=("data",))
        return Listing("hdf5", [""] * len(table), np.zeros(len(table), dtype=np.int64), table=table)
    label_field = options.label_column or "label"
    table = Hdf5(path, fields=("data", label_field))
    bad: Optional[Dict[int, str]] = None if getattr(options, "strict", True) else {}
    labels = hdf5_labels(table, label_field, bad)
    return Listing("hdf5", [""] * len(table), labels, table=table, bad_rows=bad or {})


def list_csv(path: str, label_column: Optional[str], no_labels: bool, classes: Optional[Sequence[str]], *,
             strict: bool = True) -> Listing:
    """A CSV table whose label column must exist unless ``no_labels`` (a missing one is never read as all-0).
    Unless ``strict``, bad rows (a bad cell, a short row, a bad label) are left out and listed, as
    unreadable images are (``Listing.left_out``)."""
    from ...loaders.csv_table import DEFAULT_LABEL, CsvTable

    column = None if no_labels else DEFAULT_LABEL if label_column is None else label_column
    table = CsvTable(path, label_column=column, classes=classes, on_error="raise" if strict else "skip")
    if table.labels is None and not no_labels:
        raise ValueError(f"{path}: no label column {str(column)!r}; the columns are {table.header[:12]}"
                         f"{'...' if len(table.header) > 12 else ''}: pass --label-column NAME (label_column=), "
                         "or --no-labels (no_labels=True) for a file without labels")
    labels = table.labels if table.labels is not None else np.zeros(len(table), dtype=np.int64)
    names = [str(i) for i in table.ids.tolist()] if table.ids is not None else [""] * len(table)
    return Listing("csv", names, np.asarray(labels, dtype=np.int64), table=table, class_names=table.classes,
                   left_out=[(row.key, row.reason) for row in table.skipped])


def hdf5_labels(table: Any, field_name: str, bad: Optional[Dict[int, str]] = None) -> np.ndarray:
    """Every row's label, read per file in one slice; each must be one integer (Datum.label is int32).
    A row whose label is not (NaN, 2.5) raises, or with ``bad`` is recorded there (row -> why, label 0)."""
    import h5py

    parts: List[np.ndarray] = []
    for path in table.files:
        with h5py.File(path, "r") as h5:
            values = np.asarray(h5[field_name][...], dtype=np.float64)
        values = values.reshape(values.shape[0], -1)
        if values.shape[1] != 1:
            raise ValueError(f"{path}: dataset {field_name!r} has rows of {values.shape[1]} values; "
                             "a Datum holds one integer label")
        wrong = np.flatnonzero(~(values[:, 0] == np.round(values[:, 0])))  # NaN compares unequal
        if wrong.size and bad is None:
            raise ValueError(f"{path}:{wrong[0]}: label {float(values[wrong[0], 0])!r} is not an integer")
        first = int(sum(len(p) for p in parts))
        for row in wrong.tolist():
            bad[first + row] = f"label {float(values[row, 0])!r} is not an integer"  # type: ignore[index]
        column = values[:, 0].copy()
        column[wrong] = 0
        parts.append(column.astype(np.int64))
    return np.concatenate(parts)


def make_listing(src: str, kind: str, options: Any, *, exclude: Sequence[str] = ()) -> Listing:
    """The listing of ``src`` read as ``kind`` (``options`` supplies root and label_column);
    a folder source never scans the folders in ``exclude``."""
    classes = getattr(options, "classes", None)
    if kind == "folder":
        return list_folder(src, exclude, classes)
    if kind == "list":
        return list_file(src, options.root, classes)
    return list_table(src, kind, options)


def line_order(n: int, *, shuffle: bool, seed: int) -> np.ndarray:
    """Listing indices in line order: identity, or a permutation that only ``seed`` decides."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    rng = np.random.Generator(np.random.Philox(key=int(seed)))
    return rng.permutation(n).astype(np.int64)


def split_val(order: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-class validation split of ``order`` (DIGITS style), keeping line order inside each part.

    Each class sends ``round(n * fraction)`` records to val (at least one when the
    class has two or more), chosen by a permutation from ``seed`` and the class label.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction={fraction!r} must be in (0, 1)")
    is_val = np.zeros(len(order), dtype=bool)
    ordered_labels = labels[order]
    for label in np.unique(ordered_labels):
        members = np.flatnonzero(ordered_labels == label)
        n_val = int(round(len(members) * fraction))
        if n_val == 0 and len(members) >= 2:
            n_val = 1
        n_val = min(n_val, len(members) - 1)
        rng = np.random.Generator(np.random.Philox(key=[int(seed), int(label) & (2**64 - 1)]))
        is_val[members[rng.permutation(len(members))[:n_val]]] = True
    return order[~is_val], order[is_val]


def shard_range(n: int, shard: Tuple[int, int]) -> Tuple[int, int]:
    """Contiguous line-id range [lo, hi) of shard ``i`` of ``count``; shards cover [0, n) in order."""
    i, count = shard
    return i * n // count, (i + 1) * n // count


def make_splits(listing: Listing, *, shuffle: bool, seed: int, val_fraction: float,
                shard: Tuple[int, int] = (0, 1)) -> List[Split]:
    """The databases this build writes, with this shard's line ranges and each split's digest."""
    order = line_order(len(listing), shuffle=shuffle, seed=seed)
    if val_fraction > 0:
        train, val = split_val(order, listing.labels, val_fraction, seed)
        splits = [Split("train", train), Split("val", val)]
    else:
        splits = [Split("", order)]
    for split in splits:
        split.digest = split_digest(listing, split.order)
        split.lo, split.hi = shard_range(len(split.order), shard)
    return splits


def split_digest(listing: Listing, order: np.ndarray) -> str:
    """sha256 over (line id, name, label) of every record of a split: what its keys and labels will be."""
    h = hashlib.sha256()
    for line_id, idx in enumerate(order.tolist()):
        h.update(f"{line_id}\0{listing.names[idx]}\0{int(listing.labels[idx])}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def record_key(line_id: int, name: str) -> bytes:
    """``%08d_<name>`` (convert_imageset), or ``%08d`` when the record has no name (MNIST tool)."""
    return caffe_key(line_id, name or None).encode("utf-8", "surrogateescape")


def key_line_id(key: bytes) -> int:
    """The line id a key starts with; ValueError when the key has no ``%08d`` prefix."""
    digits = key.split(b"_", 1)[0]
    if not digits.isdigit():
        raise ValueError(f"key {key!r} does not start with a %08d line number")
    return int(digits)


def chunks(n_from: int, n_to: int, size: int) -> Sequence[Tuple[int, int]]:
    """[lo, hi) line-id ranges of at most ``size`` records."""
    return [(lo, min(lo + size, n_to)) for lo in range(n_from, n_to, size)]
