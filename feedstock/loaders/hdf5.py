"""Hdf5: Caffe's HDF5Data source (docs/caffe-compat.md, note 18) with random access across files.

``source`` is one .h5 file or a list file of .h5 paths (whitespace-separated
tokens, as Caffe reads it; relative paths resolved against the list file's
folder, then against the working directory as Caffe does). Datasets are named by
field; float and integer datasets are converted to float32 (never silently: an
overflow or an integer float32 does not hold is an error naming file, dataset and
row); contiguous datasets are read through a memory map, chunked ones by whole
chunks (:mod:`.hdf5_rows`); every field of a
file must have the same number of rows; row shapes are kept as stored ((N,) vs
(N, 1) labels). The global index runs through the files in list order.
"""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..protocols import Indices
from ..spec import ArraySpec, Sample, Spec
from .base import Source, deliver
from .hdf5_rows import DatasetRows
from .strings import cut

Meta = Dict[str, Tuple[Tuple[int, ...], np.dtype]]


def hdf5_files(source: str) -> List[str]:
    """The .h5 paths of ``source`` (itself when it is an HDF5 file)."""
    if not os.path.isfile(source):
        raise ValueError(f"HDF5 source {cut(repr(source))} does not exist: check the path")
    import h5py

    if h5py.is_hdf5(source):
        return [source]
    folder = os.path.dirname(os.path.abspath(source))
    with open(source, "rb") as f:
        text = os.fsdecode(f.read())
    files = []
    for number, line in enumerate(text.splitlines(), start=1):
        for token in line.split():
            files.append(_resolve(token, folder, f"{source}:{number}"))
    if not files:
        raise ValueError(f"HDF5 list file {source!r} lists no files")
    return files


def _resolve(token: str, folder: str, where: str) -> str:
    candidates = [token] if os.path.isabs(token) else [os.path.join(folder, token), token]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise ValueError(f"{where}: HDF5 file {token!r} not found (looked for {candidates})")


def read_meta(path: str, fields: Sequence[str]) -> Tuple[int, Meta]:
    """(rows, {field: (row shape, dtype)}) of one file, checking Caffe's rules."""
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"cannot open HDF5 file {path!r}: {e}") from None
    with h5:
        meta: Meta = {}
        for field in fields:
            ds = h5.get(field)
            if not isinstance(ds, h5py.Dataset):
                raise ValueError(f"HDF5 file {path!r} has no dataset {field!r} (datasets: {sorted(h5.keys())})")
            if ds.dtype.kind not in "fiu" or ds.ndim < 1:
                raise ValueError(
                    f"HDF5 file {path!r} dataset {field!r} is {ds.dtype} with shape {ds.shape}; "
                    "Caffe needs a float or integer dataset with at least one dimension"
                )
            meta[field] = (tuple(ds.shape[1:]), ds.dtype)
        rows = {field: h5[field].shape[0] for field in fields}
    if len(set(rows.values())) > 1:
        raise ValueError(f"HDF5 file {path!r}: fields have different numbers of rows {rows}")
    return next(iter(rows.values())), meta


class Hdf5(Source):
    """Rows of Caffe HDF5Data files; yields ``{field: float32 row}`` for every field."""

    _handles = ("_open",)

    def __init__(self, source: str | os.PathLike, *, fields: Sequence[str] = ("data", "label")):
        if isinstance(fields, str) or not fields or not all(isinstance(f, str) and f for f in fields):
            raise ValueError(f"fields={fields!r} must be a non-empty sequence of dataset names")
        self.source = os.fspath(source)
        self.fields = tuple(fields)
        self.files = hdf5_files(self.source)
        counts = []
        self._row_shapes: Dict[str, Tuple[int, ...]] = {}
        for path in self.files:
            rows, meta = read_meta(path, self.fields)
            counts.append(rows)
            self._check_shapes(path, meta)
        self._offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        if self._offsets[-1] == 0:
            raise ValueError(f"HDF5 source {self.source!r} has no rows")
        self._open: Dict[int, Dict[str, DatasetRows]] | None = None
        self._open_pid = -1

    def _check_shapes(self, path: str, meta: Meta) -> None:
        for field, (shape, _) in meta.items():
            first = self._row_shapes.setdefault(field, shape)
            if first != shape:
                raise ValueError(
                    f"HDF5 file {path!r} field {field!r} has rows of shape {shape}, "
                    f"but {self.files[0]!r} has {first}"
                )

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, i: int) -> Tuple[int, int]:
        f = int(np.searchsorted(self._offsets, i, side="right")) - 1
        return f, i - int(self._offsets[f])

    def key(self, i: int) -> str:
        f, row = self._locate(self._check_index(i))
        return f"{self.files[f]}:{row}"

    def _datasets(self, f: int) -> Dict[str, DatasetRows]:
        if self._open is None or self._open_pid != os.getpid():
            # HDF5 handles do not survive fork: a forked copy starts its own.
            self._open, self._open_pid = {}, os.getpid()
        if f not in self._open:
            import h5py

            h5 = h5py.File(self.files[f], "r")
            self._open[f] = {field: DatasetRows(self.files[f], h5[field]) for field in self.fields}
        return self._open[f]

    def __getitem__(self, i: int) -> Sample:
        f, row = self._locate(self._check_index(i))
        return {name: rows.run(row, 1)[0, ...] for name, rows in self._datasets(f).items()}

    def layouts(self) -> Dict[str, str]:
        """How each field of the first file is read: "memmap", "chunks" or "h5py" (for reports)."""
        return {name: rows.kind for name, rows in self._datasets(0).items()}

    def _check_indices(self, indices: Indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            idx = np.where(idx < 0, idx + n, idx)
            bad = idx[(idx < 0) | (idx >= n)]
            if bad.size:
                raise IndexError(f"index {int(bad[0])} out of range for Hdf5 of length {n}")
        return idx

    def read_batch(self, indices: Indices, out: Optional[Mapping[str, np.ndarray]] = None) -> Sample:
        """Records ``indices`` stacked per field (float32), read as whole slices grouped by file: never one
        h5py call per record. Equal to ``np.stack`` of ``self[i]``; written into ``out`` when given."""
        idx = self._check_indices(indices)
        run = self._run_of(idx)
        if run is not None:  # consecutive rows of one file (a sequential pass): one slice per field
            f, row = run
            fields = {name: rows.run(row, len(idx)) for name, rows in self._datasets(f).items()}
            return deliver(fields, out)
        if len(self.files) == 1:  # one file: its rows in the order asked (a shuffled batch)
            readers = self._datasets(0)
            if out is not None and all(readers[name].take_into(idx, out[name]) for name in self.fields
                                       if name in out) and set(out) <= set(self.fields):
                return dict(out)
            return deliver({name: rows.rows(idx) for name, rows in self._datasets(0).items()}, out)
        files = np.searchsorted(self._offsets, idx, side="right") - 1
        fields = {name: np.empty((len(idx), *self._row_shapes[name]), np.float32) for name in self.fields}
        for f in np.unique(files):
            sel = np.flatnonzero(files == f)
            for name, rows in self._datasets(int(f)).items():
                fields[name][sel] = rows.rows(idx[sel] - self._offsets[f])
        return deliver(fields, out)

    def _run_of(self, idx: np.ndarray) -> Optional[Tuple[int, int]]:
        """(file, first row) when ``idx`` is ``i, i + 1, ...`` inside one file, else None."""
        if not len(idx):
            return None
        first, last = int(idx[0]), int(idx[-1])
        if last - first != len(idx) - 1 or (len(idx) > 1 and not bool((idx[1:] - idx[:-1] == 1).all())):
            return None
        f, row = self._locate(first)
        return (f, row) if last < int(self._offsets[f + 1]) else None

    def spec(self) -> Spec:
        return {name: ArraySpec(self._row_shapes[name], np.float32) for name in self.fields}

    def __repr__(self) -> str:
        return f"Hdf5({self.source!r}, {len(self)} rows in {len(self.files)} files, fields={self.fields})"
