"""Pairs list files: one ``<image> <mask>`` line per pair; both paths may hold spaces.

The split rule (unambiguous, decided from the line alone, never from the disk):

1. A line holding a TAB splits at the tab; it must hold exactly one.
2. Otherwise the line splits at the one space that follows an image extension
   (``.png .jpg .jpeg .bmp .ppm``, any case) and precedes a non-empty rest:
   ``my photos/a 1.jpg my masks/a 1.png`` -> ``my photos/a 1.jpg`` + ``my masks/a 1.png``.
   No such space, or more than one (``x.jpg y.jpg z.png``), is an error naming
   the file and line that asks for a tab.

Lines are split on ``\\n`` (a trailing ``\\r`` is dropped); blank lines are skipped.
Each path becomes ``root + path`` by plain string concatenation, as Caffe's
``root_folder`` (give it a trailing ``/``).
"""
from __future__ import annotations

import os
from typing import List, Tuple

from .decode import IMAGE_EXTENSIONS

PathPair = Tuple[str, str]


def _extension_spaces(line: str) -> List[int]:
    """Positions of the spaces that follow an image extension and precede more text."""
    lower = line.lower()
    cuts = []
    for i, ch in enumerate(line):
        if ch == " " and i + 1 < len(line) and line[i + 1 :].strip() and lower[:i].endswith(IMAGE_EXTENSIONS):
            cuts.append(i)
    return cuts


def split_pairs_line(line: str, where: str) -> PathPair:
    """(image, mask) of one non-blank line; ``where`` = ``"file:line"`` for the error."""
    if "\t" in line:
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"{where}: expected '<image>\\t<mask>' (exactly one tab), got {line!r}")
        return parts[0], parts[1]
    cuts = _extension_spaces(line)
    if len(cuts) != 1:
        found = "no space after an image extension" if not cuts else f"{len(cuts)} candidate spaces"
        raise ValueError(
            f"{where}: cannot split {line!r} into '<image> <mask>' ({found}; the split is the one space "
            f"after an image extension {IMAGE_EXTENSIONS}); separate the two paths with a tab"
        )
    return line[: cuts[0]], line[cuts[0] + 1 :]


def read_pairs_list(path: str | os.PathLike, root: str | os.PathLike = "") -> List[PathPair]:
    """Every (root + image, root + mask) of a pairs list file, in file order."""
    path, root = os.fspath(path), os.fspath(root)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"cannot read pairs list {path!r}: {e.strerror or e}") from None
    text = os.fsdecode(raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw)
    pairs = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line[:-1] if line.endswith("\r") else line
        if not line.strip():
            continue
        image, mask = split_pairs_line(line, f"{path}:{number}")
        pairs.append((root + image, root + mask))
    if not pairs:
        raise ValueError(f"pairs list {path!r} is empty (no '<image> <mask>' lines)")
    return pairs

