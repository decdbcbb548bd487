"""CsvTable: a numeric feature table such as Kaggle Otto's ``id,feat_1..feat_93,target``.

Parsed once into one float32 (rows, features) array, an int64 label array and an
int64 id array (see :mod:`.csv_parse`); reads are row views, read-only.
``read_batch`` gathers many rows with one fancy index (the Loader's batch fast path).
"""
from __future__ import annotations

import csv
import logging
import os
from typing import List, Mapping, Optional

import numpy as np

from ..protocols import Indices
from ..spec import ArraySpec, Sample, Spec
from .base import Source, deliver
from .csv_classes import ClassesArg, as_classes, label_rows
from .csv_parse import Columns, Parsed, SkippedRow, parse_fast, parse_slow

log = logging.getLogger(__name__)
ON_ERROR = ("raise", "skip")
LABEL_LIKE = frozenset({"target", "label", "labels", "class", "classes", "category"})  # not "y": x,y features
_LOG_FIRST = 5  # skipped rows logged one by one, then one summary line


class _DefaultColumn(str):
    """A column name given by default: used when the header has it, ignored when it does not."""


DEFAULT_LABEL = _DefaultColumn("target")
DEFAULT_ID = _DefaultColumn("id")


def _shown(header: List[str]) -> str:
    return f"{header[:12]}{'...' if len(header) > 12 else ''}"


def _find_column(path: str, header: List[str], name: Optional[str], role: str) -> Optional[int]:
    if name is None:
        return None
    if name in header:
        return header.index(name)
    if isinstance(name, _DefaultColumn):
        if role == "label":
            _check_no_other_label(path, header, name)
        return None
    raise ValueError(f"{path}: {role}_column={str(name)!r} is not in the header {_shown(header)}")


def _check_no_other_label(path: str, header: List[str], name: str) -> None:
    """The default label column is absent: a column named like a label would silently become a feature."""
    other = [h for h in header if h.strip().lower() in LABEL_LIKE]
    if other:
        raise ValueError(f"{path}: no label column {str(name)!r}; the columns are {_shown(header)}: pass "
                         f"label_column={other[0]!r} (--label-column) if it holds the labels, or "
                         "label_column=None (--no-labels) for a file without labels")


def _read_header(path: str, raw: bytes) -> tuple[List[str], bytes]:
    if not raw or raw.isspace():
        raise ValueError(f"CSV file {path!r} is empty")
    cut = raw.find(b"\n")
    head, body = (raw, b"") if cut < 0 else (raw[:cut], raw[cut + 1 :])
    header = [h.strip() for h in next(csv.reader([head.decode("utf-8", "replace").rstrip("\r")]))]
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise ValueError(f"{path}:1: duplicate column names {duplicates}")
    return header, body


class CsvTable(Source):
    """Rows of a CSV table: ``{"data": float32 (F,) [or (F, 1, 1)], "label": int64, "id": int64}``.

    ``label_column``/``id_column`` left at their defaults are optional (the Otto test
    file has no ``target``), but a file without ``target`` that has a column named
    like a label (``label``, ``class``...) is refused rather than read as a feature;
    named explicitly they must exist; ``None`` ignores them. Every other column is a
    float32 feature. Class names become 0-based codes by :mod:`.csv_classes`
    (``Class_<n>`` by its number; ``classes=`` gives the dataset's list, as saved with
    a build in labels.txt: :func:`~.csv_classes.read_classes`); ``classes`` holds the
    names (None for integer labels). ``on_error="skip"``: a bad cell, short/long row
    or bad label skips that row, listed in ``skipped`` (file:line, reason), logged
    and summed up by ``report()``. ``caffe_shape=True`` shapes rows (F, 1, 1).
    """

    def __init__(self, path: str | os.PathLike, *, label_column: Optional[str] = DEFAULT_LABEL,
                 id_column: Optional[str] = DEFAULT_ID, caffe_shape: bool = False,
                 classes: ClassesArg = None, on_error: str = "raise"):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error={on_error!r} must be one of {ON_ERROR}")
        self.path = os.fspath(path)
        self.caffe_shape = bool(caffe_shape)
        self.on_error = on_error
        given = as_classes(classes, f"{self.path}: classes")
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise ValueError(f"cannot read CSV file {self.path!r}: {e.strerror or e}") from None
        raw = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
        header, body = _read_header(self.path, raw)
        self.header: List[str] = header
        columns = Columns(header, _find_column(self.path, header, id_column, "id"),
                          _find_column(self.path, header, label_column, "label"))
        if not columns.features:
            raise ValueError(f"{self.path}: no feature columns besides id/label in header {header}")
        parsed = parse_fast(self.path, body, columns)
        if parsed is None:
            parsed = parse_slow(self.path, raw.decode("utf-8", "replace"), columns, skip=on_error == "skip")
        self._store(*label_rows(parsed, columns, self.path, given, skip=on_error == "skip"), columns)

    def _store(self, parsed: Parsed, labels: Optional[np.ndarray], classes: Optional[List[str]],
               columns: Columns) -> None:
        self.skipped: List[SkippedRow] = [SkippedRow(self.path, line, why) for line, why in sorted(parsed.bad)]
        if parsed.features.shape[0] == 0:
            first = f" ({len(self.skipped)} bad rows skipped, first {self.skipped[0].key}: " \
                f"{self.skipped[0].reason})" if self.skipped else ""
            raise ValueError(f"CSV file {self.path!r} has a header but no data rows{first}")
        self._log_skipped()
        self.columns: List[str] = [columns.names[j] for j in columns.features]
        self._features = parsed.features
        self._features.flags.writeable = False
        self._lines = parsed.lines
        self._ids = parsed.ids
        if self._ids is not None:
            self._ids.flags.writeable = False
        self.classes: Optional[List[str]] = classes
        self._labels: Optional[np.ndarray] = labels
        if labels is not None:
            labels.flags.writeable = False
        self._warn_non_finite()

    def _log_skipped(self) -> None:
        """Skipped rows are warned about, the first few one by one (as the Loader's bad records)."""
        for row in self.skipped[:_LOG_FIRST]:
            log.warning("skipped bad row %s: %s", row.key, row.reason)
        if len(self.skipped) > _LOG_FIRST:
            log.warning("skipped %d bad rows of %s in all (see CsvTable.skipped)", len(self.skipped), self.path)

    def _warn_non_finite(self) -> None:
        """NaN/inf cells are numbers and kept, but never unnoticed: one warning naming the first."""
        bad = ~np.isfinite(self._features)
        if bad.any():
            row, col = (int(v[0]) for v in np.nonzero(bad))
            log.warning("%s:%d, column %r: %d non-finite feature values (NaN/inf) in the table, kept as they are",
                        self.path, self._line(row), self.columns[col], int(bad.sum()))

    def report(self) -> dict:
        """Rows left out under ``on_error="skip"``: the count and (key=file:line, line, error) of each."""
        return {"bad_records": len(self.skipped), "skipped": [row.as_record() for row in self.skipped]}

    def _line(self, row: int) -> int:
        return int(self._lines[row]) if self._lines is not None else row + 2

    @property
    def features(self) -> np.ndarray:
        """The whole (rows, F) float32 table, read-only."""
        return self._features

    @property
    def labels(self) -> Optional[np.ndarray]:
        return self._labels

    @property
    def ids(self) -> Optional[np.ndarray]:
        return self._ids

    def __len__(self) -> int:
        return self._features.shape[0]

    def __getitem__(self, i: int) -> Sample:
        i = self._check_index(i)
        row = self._features[i]
        out = {"data": row.reshape(-1, 1, 1) if self.caffe_shape else row}
        if self._labels is not None:
            out["label"] = self._labels[i, ...]
        if self._ids is not None:
            out["id"] = self._ids[i, ...]
        return out

    def read_batch(self, indices: Indices, out: Optional[Mapping[str, np.ndarray]] = None) -> Sample:
        """The rows ``indices`` stacked: equal to ``np.stack`` of ``self[i]`` per field (new arrays, or ``out``)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        try:
            rows = self._features.take(idx, axis=0)  # checks the bounds; faster than fancy indexing
        except IndexError:
            bad = idx[(idx < -len(self)) | (idx >= len(self))]
            raise IndexError(f"index {int(bad[0])} out of range for CsvTable of length {len(self)}") from None
        fields = {"data": rows.reshape(len(idx), -1, 1, 1) if self.caffe_shape else rows}
        if self._labels is not None:
            fields["label"] = self._labels.take(idx)
        if self._ids is not None:
            fields["id"] = self._ids.take(idx)
        return deliver(fields, out)

    def key(self, i: int) -> str:
        return f"{self.path}:{self._line(self._check_index(i))}"

    def spec(self) -> Spec:
        n = self._features.shape[1]
        out = {"data": ArraySpec((n, 1, 1) if self.caffe_shape else (n,), np.float32)}
        if self._labels is not None:
            out["label"] = ArraySpec((), np.int64)
        if self._ids is not None:
            out["id"] = ArraySpec((), np.int64)
        return out

    def __repr__(self) -> str:
        return f"CsvTable({self.path!r}, {len(self)} rows x {self._features.shape[1]} features)"
