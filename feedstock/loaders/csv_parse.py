"""Parse a numeric CSV table (plus an id and a label column) once into flat numpy arrays.

Fast path: the structure (rows, commas per row, the id/label cells) is found with
numpy on the raw bytes and the numeric columns go through numpy's C ``loadtxt``.
Anything the fast path does not handle (quotes, blank lines inside the table,
ragged rows, bad cells) goes through the ``csv`` module path, which is the
reference behaviour and raises errors naming the file, line and column.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np


@dataclass
class Columns:
    """Positions of the id column, the label column and the feature columns in the header."""

    names: List[str]
    id: Optional[int]
    label: Optional[int]

    @property
    def features(self) -> List[int]:
        return [j for j in range(len(self.names)) if j not in (self.id, self.label)]


@dataclass
class Parsed:
    """The table as flat arrays; ``lines`` maps rows to file line numbers (None: row i is line i+2)."""

    features: np.ndarray
    labels: Optional[np.ndarray]
    ids: Optional[np.ndarray]
    lines: Optional[np.ndarray]


def _where(path: str, line: int, columns: Columns, j: Optional[int] = None) -> str:
    if j is None:
        return f"{path}:{line}"
    return f"{path}:{line}, column {j + 1} ({columns.names[j]!r})"


def _parse_id(cell: str | bytes, where: str) -> int:
    try:
        value = int(cell)
    except ValueError:
        value = None
    if value is None or not -(2**63) <= value < 2**63:
        text = bytes(cell).decode("utf-8", "replace") if isinstance(cell, bytes) else cell
        raise ValueError(f"{where}: id {text!r} is not an integer in the int64 range")
    return value


def parse_slow(path: str, text: str, columns: Columns) -> Parsed:
    """Reference parser with the csv module; every bad cell raises naming file, line, column."""
    reader = csv.reader(io.StringIO(text))
    next(reader)  # header, already parsed
    feature_cols = columns.features
    features: List[List[float]] = []
    labels: List[str] = []
    ids: List[int] = []
    lines: List[int] = []
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(columns.names):
            kind = "short" if len(row) < len(columns.names) else "long"
            raise ValueError(f"{path}:{line}: {kind} row: {len(row)} fields, the header has {len(columns.names)}")
        values = []
        for j in feature_cols:
            try:
                values.append(float(row[j]))
            except ValueError:
                raise ValueError(f"{_where(path, line, columns, j)}: {row[j]!r} is not a number") from None
        features.append(values)
        if columns.label is not None:
            labels.append(row[columns.label])
        if columns.id is not None:
            ids.append(_parse_id(row[columns.id], _where(path, line, columns, columns.id)))
        lines.append(line)
    return Parsed(
        features=np.asarray(features, dtype=np.float32).reshape(len(lines), len(feature_cols)),
        labels=np.asarray(labels, dtype=str) if columns.label is not None else None,
        ids=np.asarray(ids, dtype=np.int64) if columns.id is not None else None,
        lines=np.asarray(lines, dtype=np.int64),
    )


def _line_bounds(b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, before any \\r) of every line of the body; trailing blank lines dropped."""
    nl = np.flatnonzero(b == 10)
    if b.size and b[-1] != 10:
        nl = np.append(nl, b.size)
    if nl.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.concatenate(([0], nl[:-1] + 1)).astype(np.int64)
    ends = nl.astype(np.int64)
    cr = (ends > starts) & (b[np.maximum(ends - 1, 0)] == 13)
    ends[cr] -= 1
    keep = len(ends)
    while keep and ends[keep - 1] == starts[keep - 1]:
        keep -= 1
    return starts[:keep], ends[:keep]


def _cell_bounds(b: np.ndarray, starts: np.ndarray, ends: np.ndarray, ncols: int) -> Optional[np.ndarray]:
    """Comma positions as (rows, ncols - 1), or None when any row has another number of fields."""
    commas = np.flatnonzero(b == 44)
    per_row = np.searchsorted(commas, ends) - np.searchsorted(commas, starts)
    if np.any(per_row != ncols - 1) or len(commas) != len(starts) * (ncols - 1):
        return None
    return commas.reshape(len(starts), ncols - 1)


_GATHER_WIDTH = 64  # cells up to this long are gathered with numpy; longer ones sliced in Python


def _column_cells(b: np.ndarray, starts, ends, commas, j: int, ncols: int) -> np.ndarray:
    """Column ``j`` of every row as one fixed-width bytes array (numpy ``S``)."""
    lo = starts if j == 0 else commas[:, j - 1] + 1
    hi = ends if j == ncols - 1 else commas[:, j]
    width = max(int((hi - lo).max()), 1)
    if width > _GATHER_WIDTH:  # a (rows, width) gather would be too big
        body = b.tobytes()
        return np.asarray([body[s:e] for s, e in zip(lo.tolist(), hi.tolist())], dtype=f"S{width}")
    index = lo[:, None] + np.arange(width)
    cells = np.where(index < hi[:, None], b[np.minimum(index, b.size - 1)], 0).astype(np.uint8)
    return np.ascontiguousarray(cells).view(f"S{width}").reshape(-1)


def parse_ids(cells: Sequence, where: Callable[[int], str]) -> np.ndarray:
    """Integer ids; the first bad one raises naming its line and column."""
    try:
        return np.asarray(cells).astype(np.int64)
    except (ValueError, OverflowError):
        for r, cell in enumerate(cells):
            _parse_id(cell, where(r))
        raise


def parse_fast(path: str, body: bytes, columns: Columns) -> Optional[Parsed]:
    """The numpy path; None when the table needs the reference parser (which then reports errors)."""
    b = np.frombuffer(body, dtype=np.uint8)
    if b"\"" in body:
        return None
    starts, ends = _line_bounds(b)
    if len(starts) == 0 or np.any(ends == starts):
        return None
    ncols = len(columns.names)
    commas = _cell_bounds(b, starts, ends, ncols)
    if commas is None:
        return None
    try:
        features = np.loadtxt(io.BytesIO(body[: ends[-1]]), delimiter=",", usecols=columns.features,
                              dtype=np.float32, comments=None, ndmin=2)
    except ValueError:
        return None
    if features.shape[0] != len(starts):
        return None
    labels = ids = None
    if columns.label is not None:
        labels = _column_cells(b, starts, ends, commas, columns.label, ncols)
    if columns.id is not None:
        cells = _column_cells(b, starts, ends, commas, columns.id, ncols)
        ids = parse_ids(cells, lambda r: _where(path, r + 2, columns, columns.id))
    return Parsed(features=features, labels=labels, ids=ids, lines=None)


def natural_key(text: str) -> Tuple:
    """Sort key comparing digit runs as numbers: Class_2 < Class_10."""
    parts = re.split(r"([0-9]+)", text)
    return tuple(int(p) if k % 2 else p for k, p in enumerate(parts)), text


def label_codes(labels: np.ndarray, where: Callable[[int], str]) -> Tuple[np.ndarray, Optional[List[str]]]:
    """Integer labels kept as int64 (classes None); other strings -> 0-based codes in natural order.

    ``labels`` holds raw cells (bytes or str); only the distinct values are decoded.
    ``where(row)`` names a row for the empty-label error.
    """
    raw, inverse = np.unique(labels, return_inverse=True)
    names = [(r.decode("utf-8", "replace") if isinstance(r, bytes) else str(r)).strip() for r in raw.tolist()]
    if "" in names:
        row = int(np.flatnonzero(inverse.reshape(-1) == names.index(""))[0])
        raise ValueError(f"{where(row)}: empty label")
    try:
        values = [int(n) for n in names]
    except ValueError:
        values = None
    if values is not None:
        return np.asarray(values, dtype=np.int64)[inverse].reshape(-1), None
    classes = sorted(set(names), key=natural_key)
    code = {name: k for k, name in enumerate(classes)}
    rank = np.asarray([code[n] for n in names], dtype=np.int64)
    return rank[inverse].reshape(-1), classes
