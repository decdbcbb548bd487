"""One class mapping per dataset: label cells of a CSV to 0-based codes that never depend on the file.

Codes are decided by, in order:

1. ``classes`` given (the list stored with a build or a training snapshot): code =
   position in the list; a name outside it is a bad row. ``Class_01`` matches
   ``Class_1`` (same prefix, same number) when the exact name is not listed.
2. All labels integers: kept as they are (no class names).
3. All labels ``<prefix>_<int>`` with one prefix (Otto's ``Class_1..Class_9``):
   code = the integer minus the first class number (1, or 0 when ``<prefix>_0``
   occurs), so a validation file without ``Class_1`` still maps ``Class_3`` to 2.
   The class list runs from the first number to the largest seen, gaps named in
   the same style.
4. Anything else (words, mixed prefixes): natural order of the names present.
   Such codes depend on the file: pass ``classes=`` for validation and test files.

Empty cells and NaN-like cells (``nan``, ``NA``, ``null``...) are missing labels:
bad rows, never a class. Integer labels mixed with other names are bad rows too.
"""
from __future__ import annotations

import collections
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .csv_parse import Columns, Parsed, label_where

log = logging.getLogger(__name__)

MISSING = frozenset({"", "nan", "-nan", "na", "n/a", "#n/a", "null", "none"})  # pandas' NA spellings
_PATTERN = re.compile(r"^(.*)_([0-9]+)$")
_INTEGER = re.compile(r"^[+-]?[0-9]+(\.0*)?$")  # "3.0": an integer written by a float column
MAX_PATTERN_SPAN = 100_000  # a class list longer than this from <prefix>_<int> names is not a numbering
LABELS_FILE = "labels.txt"
# What sources take as ``classes``: a list of names, or a build's labels.txt (or the build folder).
ClassesArg = Union[None, str, "os.PathLike[str]", Sequence[str]]


@dataclass
class LabelCodes:
    """Codes per row (-1 for bad rows), the class names (None: integer labels) and the bad rows."""

    codes: np.ndarray
    classes: Optional[List[str]]
    bad: List[Tuple[int, str]] = field(default_factory=list)  # (row, reason), rows in order


def natural_key(text: str) -> Tuple:
    """Sort key comparing digit runs as numbers: Class_2 < Class_10."""
    parts = re.split(r"([0-9]+)", text)
    return tuple(int(p) if k % 2 else p for k, p in enumerate(parts)), text


def split_name(name: str) -> Optional[Tuple[str, int, str]]:
    """(prefix, number, digits) of a ``<prefix>_<int>`` class name, else None."""
    m = _PATTERN.match(name)
    return None if m is None else (m.group(1), int(m.group(2)), m.group(2))


def as_int(name: str) -> Optional[int]:
    """The integer label ``name`` spells (int64 range), else None."""
    if _INTEGER.match(name) is None:  # not int(): it also takes "1_000" and non-ASCII digits
        return None
    value = int(name.split(".")[0])
    return value if -(2**63) <= value < 2**63 else None


def is_number(name: str) -> bool:
    try:
        float(name)
    except ValueError:
        return False
    return True


def _missing_reason(name: str) -> str:
    return "empty label" if not name else f"missing label {name!r}"


def encode_labels(cells: np.ndarray, *, classes: Optional[Sequence[str]] = None) -> LabelCodes:
    """Codes of raw label cells (bytes or str) by the rules of this module; bad rows are listed, not raised."""
    raw, inverse = np.unique(cells, return_inverse=True)
    inverse = inverse.reshape(-1)
    names = [(r.decode("utf-8", "replace") if isinstance(r, bytes) else str(r)).strip() for r in raw.tolist()]
    result_classes: Optional[List[str]]
    if classes is not None:
        per_name = _given_codes(names, list(classes))
        result_classes = list(classes)
        problems = {i: reason for i, (_, reason) in enumerate(per_name) if reason}
        values = [code for code, _ in per_name]
    else:
        values, result_classes, problems = _derived_codes(names)
    table = np.asarray(values, dtype=np.int64)
    codes = table[inverse] if len(inverse) else np.zeros(0, np.int64)
    bad: List[Tuple[int, str]] = []
    if problems:
        is_bad = np.zeros(len(names), dtype=bool)
        is_bad[list(problems)] = True
        rows = np.flatnonzero(is_bad[inverse])
        bad = [(int(r), problems[int(inverse[r])]) for r in rows]
        codes[rows] = -1
    return LabelCodes(codes, result_classes, bad)


def _given_codes(names: List[str], classes: List[str]) -> List[Tuple[int, str]]:
    """(code, problem) per distinct name against a given class list."""
    exact = {name: k for k, name in enumerate(classes)}
    numbered: Dict[Tuple[str, int], int] = {}
    for k, name in enumerate(classes):
        parts = split_name(name)
        if parts is not None:
            numbered.setdefault(parts[:2], k)
    shown = f"{classes[0]}..{classes[-1]}" if len(classes) > 2 else ", ".join(classes)
    out = []
    for name in names:
        if name.lower() in MISSING and name not in exact:
            out.append((-1, _missing_reason(name)))
            continue
        parts = split_name(name)
        code = exact.get(name, numbered.get(parts[:2]) if parts is not None else None)
        if code is None:
            out.append((-1, f"class {name!r} is not one of the {len(classes)} classes of the dataset ({shown})"))
        else:
            out.append((code, ""))
    return out


def _derived_codes(names: List[str]) -> Tuple[List[int], Optional[List[str]], Dict[int, str]]:
    """(code per distinct name, classes, {name index: problem}) from the names alone."""
    problems = {i: _missing_reason(n) for i, n in enumerate(names) if n.lower() in MISSING}
    valid = [i for i in range(len(names)) if i not in problems]
    ints = {i: as_int(names[i]) for i in valid}
    numeric = any(v is not None for v in ints.values()) or (valid and all(is_number(names[i]) for i in valid))
    if numeric:  # integer labels; a fraction is a regression target, not a class
        for i, v in ints.items():
            if v is None:
                kind = "a number but not an integer" if is_number(names[i]) else "not an integer"
                problems[i] = f"label {names[i]!r} is {kind} (the labels are integer classes)"
        return [_or_bad(ints.get(i)) for i in range(len(names))], None, problems
    numbered = _numbered_classes([names[i] for i in valid])
    if numbered is not None:
        lookup, classes = numbered
        return [lookup.get(n, -1) for n in names], classes, problems
    classes = sorted({names[i] for i in valid}, key=natural_key)
    code = {name: k for k, name in enumerate(classes)}
    return [code.get(n, -1) for n in names], classes, problems


def _or_bad(code: Optional[int]) -> int:
    return -1 if code is None else code


def _numbered_classes(names: List[str]) -> Optional[Tuple[Dict[str, int], List[str]]]:
    """({name: code}, classes) when every name is ``<prefix>_<int>`` with one prefix, else None."""
    split = {n: split_name(n) for n in names}
    parts = {n: p for n, p in split.items() if p is not None}
    if not names or len(parts) != len(split) or len({p[0] for p in parts.values()}) != 1:
        return None
    numbers = {p[1] for p in parts.values()}
    first, last = (0 if 0 in numbers else 1), max(numbers)
    if last - first + 1 > MAX_PATTERN_SPAN:
        log.warning("class numbers up to %d are not a numbering from %d: classes in name order", last, first)
        return None
    prefix = next(iter(parts.values()))[0]
    seen: Dict[int, str] = {}
    for name in sorted(names, key=lambda n: (len(parts[n][2]), n)):  # the unpadded spelling names the class
        seen.setdefault(parts[name][1], name)
    widths = {len(p[2]) for p in parts.values() if p[2].startswith("0") and len(p[2]) > 1}
    width = widths.pop() if len(widths) == 1 else 0
    joiner = f"{prefix}_"
    classes = [seen.get(k, f"{joiner}{str(k).zfill(width)}") for k in range(first, last + 1)]
    return {n: parts[n][1] - first for n in names}, classes


def label_rows(parsed: Parsed, columns: Columns, path: str, classes: Optional[Sequence[str]], *,
               skip: bool) -> Tuple[Parsed, Optional[np.ndarray], Optional[List[str]]]:
    """(rows kept, their int64 label codes, class names) of a parsed table.

    A bad label raises naming file, line and column, or with ``skip`` drops its row
    and adds it to ``Parsed.bad``. Without a label column: no codes, ``classes`` as given.
    """
    if parsed.labels is None or columns.label is None:
        return parsed, None, None if classes is None else list(classes)
    result = encode_labels(parsed.labels, classes=classes)
    if not result.bad:
        return parsed, result.codes, result.classes
    lines = parsed.line_numbers()
    row, reason = result.bad[0]
    if not skip:
        more = f" (and {len(result.bad) - 1} more bad labels; on_error='skip' skips such rows)" \
            if len(result.bad) > 1 else ""
        raise ValueError(f"{label_where(path, columns, int(lines[row]))}: {reason}{more}")
    keep = np.ones(len(result.codes), dtype=bool)
    for row, reason in result.bad:
        keep[row] = False
        where = label_where(path, columns, int(lines[row]))
        parsed.bad.append((int(lines[row]), where[len(f"{path}:{int(lines[row])}, "):] + f": {reason}"))
    return parsed.keep(keep), result.codes[keep], result.classes


def read_classes(path: str | os.PathLike) -> List[str]:
    """The class list saved with a build: ``labels.txt`` (line i = class i) or a build folder holding it."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, LABELS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.rstrip("\r\n") for line in f]
    except OSError as e:
        raise ValueError(f"cannot read the class list {path!r}: {e.strerror or e}") from None
    while names and not names[-1].strip():
        names.pop()
    if not names or any(not n.strip() for n in names):
        raise ValueError(f"{path}: a class list needs one non-empty class name per line")
    return check_classes(names, path)


def check_classes(classes: Sequence[str], where: str = "classes") -> List[str]:
    """The list as str, refusing duplicates and empty names (ValueError naming ``where``)."""
    if isinstance(classes, (str, bytes, os.PathLike)):
        raise ValueError(f"{where}: expected a list of class names, got {classes!r}; "
                         "read a saved list with read_classes(path)")
    names = [str(c).strip() for c in classes]
    if not names or any(not n for n in names):
        raise ValueError(f"{where}: class names must be non-empty, got {list(classes)[:8]!r}")
    duplicates = sorted(n for n, count in collections.Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"{where}: duplicate class names {duplicates[:8]}")
    return names


def as_classes(classes: ClassesArg, where: str = "classes") -> Optional[List[str]]:
    """None, a checked list of names, or the list read from a labels.txt path (or a build folder)."""
    if classes is None:
        return None
    if isinstance(classes, (str, os.PathLike)):
        return read_classes(classes)
    return check_classes(classes, where)
