"""The npz snapshot file: one writer (atomic, nothing left behind on failure) and one reader.

A snapshot holds ``meta`` (JSON: iteration, solver config, ``extra``), ``param/<name>``
(weights), ``history/<name>`` (momentum) and ``deploy/<name>`` (arrays the deploy
record carries by value, e.g. the mean image). Every reader goes through
:func:`read_snapshot`, so a damaged file is reported in one place.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import numpy as np

from ..errors import SNAPSHOT_ERRORS, unreadable_snapshot
from ..outputs import atomic_file

PathLike = Union[str, Path]
PREFIXES = ("param/", "history/", "deploy/")


@dataclass
class SnapshotData:
    """The parts of one snapshot file."""

    meta: Dict[str, Any]
    params: Dict[str, np.ndarray] = field(default_factory=dict)
    history: Dict[str, np.ndarray] = field(default_factory=dict)
    deploy: Dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def extra(self) -> Dict[str, Any]:
        return dict(self.meta.get("extra", {}))


def write_snapshot(path: PathLike, meta: Mapping[str, object], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``meta`` and ``arrays`` (names with a :data:`PREFIXES` prefix) to ``path`` atomically: a
    failure (full disk, Ctrl-C) leaves neither half a snapshot nor a temporary file."""
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        # an open file: np.savez would append ".npz" to a name that lacks it
        np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)  # type: ignore[arg-type]
    return path


def read_snapshot(path: PathLike) -> SnapshotData:
    """Every part of a snapshot written by :func:`write_snapshot`; errors name the file."""
    try:
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            parts: Dict[str, Dict[str, np.ndarray]] = {p: {} for p in PREFIXES}
            for name in z.files:
                for prefix in PREFIXES:
                    if name.startswith(prefix):
                        parts[prefix][name[len(prefix):]] = z[name]
    except SNAPSHOT_ERRORS as e:
        raise ValueError(unreadable_snapshot(path, e)) from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: not a feedstock snapshot (meta is not a mapping)")
    return SnapshotData(meta, parts["param/"], parts["history/"], parts["deploy/"])
