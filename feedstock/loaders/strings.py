"""Compact string tables (many paths or keys in one bytes blob plus a flat offsets array) and ``cut``.

One Python object per table instead of one per record, so forked workers that
read the index do not touch (and copy-on-write) millions of small objects.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator, List, Union

import numpy as np

Text = Union[str, bytes]
ECHO_CHARS = 120  # an echoed input (a path, a value, a param_str) is cut to this many characters


def cut(text: object, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters plus its length: the one rule for echoing an input in a
    message (library, CLI and remote replies), so a 1 MB path never becomes a 1 MB error."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:max(limit - 3, 1)]}... ({len(text):,} characters)"  # the cut word is `limit` long


class StringTable:
    """Immutable sequence of byte strings (``raw``) or filesystem strings (``[i]``)."""

    __slots__ = ("_blob", "_offsets", "_starts")

    def __init__(self, items: Iterable[Text]):
        encoded: List[bytes] = [os.fsencode(s) if isinstance(s, str) else bytes(s) for s in items]
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._offsets[1:])
        self._blob = b"".join(encoded)
        self._starts = memoryview(self._offsets)  # type: ignore[arg-type]  # ints on indexing: fast slicing

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def raw(self, i: int) -> bytes:
        """Item ``i`` as the exact bytes stored (no trailing-NUL stripping, unlike numpy ``S``)."""
        starts = self._starts
        return self._blob[starts[i] : starts[i + 1]]

    def __getitem__(self, i: int) -> str:
        """Item ``i`` decoded as a filesystem path (undecodable bytes survive a round trip)."""
        return os.fsdecode(self.raw(i))

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        return len(self._blob) + self._offsets.nbytes

    def __getstate__(self):
        return (self._blob, self._offsets)

    def __setstate__(self, state) -> None:
        self._blob, self._offsets = state
        self._starts = memoryview(self._offsets)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StringTable):
            return NotImplemented
        return self._blob == other._blob and np.array_equal(self._offsets, other._offsets)

    def __repr__(self) -> str:
        return f"StringTable({len(self)} items, {self.nbytes} bytes)"
