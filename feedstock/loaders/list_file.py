"""ListFile: Caffe's ImageData / convert_imageset list file, ``<path> <label>`` per line.

Parsing follows Caffe (docs/caffe-compat.md, note 13): the line is split at its
*last* space, so paths may hold spaces; tabs are not separators; the image path
is ``root + path`` by plain string concatenation; the label is read like
``atoi`` (surrounding whitespace, e.g. a CRLF ``\\r``, tolerated). Unlike Caffe,
a line with no space or a label that is not an integer is an error naming the
file and line instead of a silent label 0. Blank lines are skipped.
"""
from __future__ import annotations

import os
import re
from typing import List, Optional, Sequence, Tuple

from .csv_classes import ClassesArg, as_classes
from .images import LabeledImages

_LABEL = re.compile(r"\s*([+-]?[0-9]+)\s*\Z")


def parse_list_line(line: str, where: str) -> Tuple[str, int]:
    """(path, label) of one non-blank line; ``where`` = ``"file:line"`` for the error."""
    cut = line.rfind(" ")
    if cut < 0:
        raise ValueError(f"{where}: expected '<path> <label>' (split at the last space), got {line!r}")
    match = _LABEL.match(line, cut + 1)
    if match is None:
        raise ValueError(f"{where}: label {line[cut + 1:]!r} is not an integer (line {line!r})")
    return line[:cut], int(match.group(1))


def read_list_file(path: str) -> Tuple[List[str], List[int]]:
    """All (relative path, label) pairs of a list file, in file order."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"cannot read list file {path!r}: {e.strerror or e}") from None
    # Split on \n only, like std::getline: a lone \r is not a line break.
    text = os.fsdecode(raw) if not raw.startswith(b"\xef\xbb\xbf") else os.fsdecode(raw[3:])
    paths: List[str] = []
    labels: List[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        item, label = parse_list_line(line, f"{path}:{number}")
        paths.append(item)
        labels.append(label)
    if not paths:
        raise ValueError(f"list file {path!r} is empty (no '<path> <label>' lines)")
    return paths, labels


def check_list_labels(path: str, items: Sequence[str], labels: Sequence[int], classes: Optional[Sequence[str]]) -> None:
    """ValueError naming the list file and item unless every label is a code of ``classes`` (when given)."""
    if classes is None:
        return
    for item, label in zip(items, labels):
        if not 0 <= label < len(classes):
            raise ValueError(f"{path}: {item!r} has label {label}, outside the {len(classes)} classes of the "
                             f"dataset (codes 0..{len(classes) - 1}: {', '.join(classes[:4])}"
                             f"{', ...' if len(classes) > 4 else ''}); check the list file or the class list")


class ListFile(LabeledImages):
    """Images named by a Caffe list file; image path = ``root + path`` (no separator added).

    Yields ``{"data": uint8 (C, H, W) BGR, "label": int64 scalar}``; ``color=False``
    reads grey (Caffe's ``is_color: false``). ``classes`` (a list, or a build's labels.txt)
    names the integer labels: label k is ``classes[k]``, a label outside the list is an error.
    """

    def __init__(self, path: str | os.PathLike, root: str | os.PathLike = "", *, classes: ClassesArg = None,
                 color: bool = True, rgb: bool = False):
        self.list_path = os.fspath(path)
        self.root = os.fspath(root)
        relative, labels = read_list_file(self.list_path)
        self.classes: Optional[List[str]] = as_classes(classes, f"{self.list_path}: classes")
        check_list_labels(self.list_path, relative, labels, self.classes)
        super().__init__([self.root + p for p in relative], labels, color=color, rgb=rgb)

    def __repr__(self) -> str:
        return f"ListFile({self.list_path!r}, root={self.root!r}, {len(self)} images)"
