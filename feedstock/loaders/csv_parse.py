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
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple, Union

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
    """The table as flat arrays; ``lines`` maps rows to file line numbers (None: row i is line i+2).

    ``bad`` lists the rows left out under ``skip=True`` as (line, reason)."""

    features: np.ndarray
    labels: Optional[np.ndarray]
    ids: Optional[np.ndarray]
    lines: Optional[np.ndarray]
    bad: List[Tuple[int, str]] = field(default_factory=list)

    def line_numbers(self) -> np.ndarray:
        """The file line of every row."""
        n = self.features.shape[0]
        return self.lines if self.lines is not None else np.arange(2, n + 2, dtype=np.int64)

    def keep(self, rows: np.ndarray) -> "Parsed":
        """Only the rows where the boolean mask ``rows`` is True (line numbers kept)."""
        take = lambda a: None if a is None else a[rows]  # noqa: E731
        return Parsed(self.features[rows], take(self.labels), take(self.ids), self.line_numbers()[rows], self.bad)


@dataclass(frozen=True)
class SkippedRow:
    """A row left out under ``on_error="skip"``: where it is and why (as the Loader's skipped records)."""

    path: str
    line: int
    reason: str

    @property
    def key(self) -> str:
        return f"{self.path}:{self.line}"

    def as_record(self) -> dict:
        return {"key": self.key, "line": self.line, "error": self.reason}


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


def _parse_row(path: str, row: List[str], line: int, columns: Columns) -> Tuple[List[float], Optional[int]]:
    """(features, id) of one csv row; ValueError naming file, line and column."""
    if len(row) != len(columns.names):
        kind = "short" if len(row) < len(columns.names) else "long"
        raise ValueError(f"{path}:{line}: {kind} row: {len(row)} fields, the header has {len(columns.names)}")
    values = []
    for j in columns.features:
        try:
            values.append(float(row[j]))
        except ValueError:
            raise ValueError(f"{_where(path, line, columns, j)}: {row[j]!r} is not a number") from None
    row_id = None if columns.id is None else _parse_id(row[columns.id], _where(path, line, columns, columns.id))
    return values, row_id


def parse_slow(path: str, text: str, columns: Columns, *, skip: bool = False) -> Parsed:
    """Reference parser with the csv module; a bad cell or row raises naming file, line, column,
    or with ``skip`` is left out and listed in ``Parsed.bad``."""
    reader = csv.reader(io.StringIO(text))
    next(reader)  # header, already parsed
    features: List[List[float]] = []
    labels: List[str] = []
    ids: List[int] = []
    lines: List[int] = []
    bad: List[Tuple[int, str]] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # e.g. a NUL byte or an unclosed quote: the rest cannot be split into rows
            raise ValueError(f"{path}:{reader.line_num}: {e}") from None
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        try:
            values, row_id = _parse_row(path, row, line, columns)
        except ValueError as e:
            if not skip:
                raise
            bad.append((line, str(e)[len(f"{path}:{line}"):].lstrip(":, ")))
            continue
        features.append(values)
        if columns.label is not None:
            labels.append(row[columns.label])
        if row_id is not None:
            ids.append(row_id)
        lines.append(line)
    return Parsed(
        features=np.asarray(features, dtype=np.float32).reshape(len(lines), len(columns.features)),
        labels=np.asarray(labels, dtype=str) if columns.label is not None else None,
        ids=np.asarray(ids, dtype=np.int64) if columns.id is not None else None,
        lines=np.asarray(lines, dtype=np.int64),
        bad=bad,
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


def _column_cells(b: np.ndarray, starts: np.ndarray, ends: np.ndarray, commas: np.ndarray, j: int,
                  ncols: int) -> np.ndarray:
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


def parse_ids(cells: Union[Sequence[Union[str, bytes]], np.ndarray], where: Callable[[int], str]) -> np.ndarray:
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
        try:
            ids = parse_ids(cells, lambda r: _where(path, r + 2, columns, columns.id))
        except (ValueError, OverflowError):
            return None  # the reference parser names (or skips) the bad id
    return Parsed(features=features, labels=labels, ids=ids, lines=None)


def label_where(path: str, columns: Columns, line: int) -> str:
    """``file:line, column k ('name')`` of a row's label cell."""
    return _where(path, line, columns, columns.label)
