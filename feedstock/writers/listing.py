"""Listings: every record of a source in order, with its key name and label, as build-lmdb encodes them.

One lister per source kind that build-lmdb reads (class folders, Caffe list files,
CSV tables, HDF5 files); :mod:`feedstock.stream.kinds` names them as the kinds'
build hooks, :mod:`.build_plan` plans a build from the listing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Protocol, Sequence

import numpy as np

from ..loaders.base import Source

if TYPE_CHECKING:
    from ..loaders.hdf5 import Hdf5


class ListingOptions(Protocol):
    """What a lister reads of build-lmdb's options (BuildOptions has them; ``no_labels`` and ``classes``
    are optional and read with getattr)."""

    @property
    def root(self) -> str: ...

    @property
    def label_column(self) -> Optional[str]: ...


@dataclass
class Listing:
    """Every record of a source in listing order: key name, label, and how to read it."""

    kind: str
    names: List[str]  # key suffix: path as in the list file, path relative to the folder, CSV id
    labels: np.ndarray  # int64 per record
    paths: Optional[List[str]] = None  # image files to open (images only)
    table: Optional[Source] = None  # record i of the listing = table[i] (tables only)
    class_names: Optional[List[str]] = None

    def __len__(self) -> int:
        return len(self.names)


def list_folder(root: str, exclude: Sequence[str] = ()) -> Listing:
    """Class-per-subfolder images; names are paths relative to ``root`` (the key suffix).
    Folders in ``exclude`` (the build's own outputs) are never scanned."""
    from ..loaders.image_folder import scan_image_folder

    classes, paths, labels = scan_image_folder(root, exclude=exclude)
    names = [os.path.relpath(p, root) for p in paths]
    return Listing("folder", names, np.asarray(labels, dtype=np.int64), paths=paths, class_names=classes)


def list_file(path: str, root: str) -> Listing:
    """A Caffe list file; names are the paths as written, files are ``root + path`` (Caffe)."""
    from ..loaders.list_file import read_list_file

    names, labels = read_list_file(path)
    return Listing("list", names, np.asarray(labels, dtype=np.int64), paths=[root + n for n in names])


def list_table(path: str, kind: str, options: ListingOptions) -> Listing:
    """A CSV table or HDF5 file/list: one Datum per row, named by the row's id (CSV) or unnamed (HDF5).

    The label column (CSV ``target``, HDF5 ``label`` unless ``label_column``) must exist
    unless ``no_labels`` (every label 0); CSV class codes follow ``classes`` when given."""
    no_labels = bool(getattr(options, "no_labels", False))
    if kind == "csv":
        return list_csv(path, options.label_column, no_labels, getattr(options, "classes", None))
    from ..loaders.hdf5 import Hdf5

    if no_labels:
        table = Hdf5(path, fields=("data",))
        return Listing("hdf5", [""] * len(table), np.zeros(len(table), dtype=np.int64), table=table)
    label_field = options.label_column or "label"
    table = Hdf5(path, fields=("data", label_field))
    return Listing("hdf5", [""] * len(table), hdf5_labels(table, label_field), table=table)


def list_csv(path: str, label_column: Optional[str], no_labels: bool, classes: Optional[Sequence[str]]) -> Listing:
    """A CSV table whose label column must exist unless ``no_labels`` (a missing one is never read as all-0)."""
    from ..loaders.csv_table import DEFAULT_LABEL, CsvTable

    column = None if no_labels else DEFAULT_LABEL if label_column is None else label_column
    table = CsvTable(path, label_column=column, classes=classes)
    if table.labels is None and not no_labels:
        raise ValueError(f"{path}: no label column {str(column)!r}; the columns are {table.header[:12]}"
                         f"{'...' if len(table.header) > 12 else ''}: pass --label-column NAME (label_column=), "
                         "or --no-labels (no_labels=True) for a file without labels")
    labels = table.labels if table.labels is not None else np.zeros(len(table), dtype=np.int64)
    names = [str(i) for i in table.ids.tolist()] if table.ids is not None else [""] * len(table)
    return Listing("csv", names, np.asarray(labels, dtype=np.int64), table=table, class_names=table.classes)


def hdf5_labels(table: Hdf5, field_name: str) -> np.ndarray:
    """Every row's label, read per file in one slice; each must be one integer (Datum.label is int32)."""
    import h5py

    parts = []
    for path in table.files:
        with h5py.File(path, "r") as h5:
            values = np.asarray(h5[field_name][...], dtype=np.float64)
        values = values.reshape(values.shape[0], -1)
        if values.shape[1] != 1:
            raise ValueError(f"{path}: dataset {field_name!r} has rows of {values.shape[1]} values; "
                             "a Datum holds one integer label")
        bad = np.flatnonzero(values[:, 0] != np.round(values[:, 0]))
        if bad.size:
            raise ValueError(f"{path}:{bad[0]}: label {float(values[bad[0], 0])!r} is not an integer")
        parts.append(values[:, 0].astype(np.int64))
    return np.concatenate(parts)
