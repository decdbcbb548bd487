"""The output side of a build: the ``OUT.partial`` directory, its manifest, the skipped report, checksums.

A build writes everything under ``OUT.partial`` (same parent, so the final
rename is atomic) and renames it to ``OUT`` only when every database is
complete: an interrupted build never leaves anything at ``OUT``, and a
``--force`` rebuild swaps the new database in only then (a failed one leaves
the previous ``OUT`` byte-identical). The rules are :mod:`feedstock.outputs`. The manifest
``build.json`` records the plan (options that decide the content, split
digests, shard), so ``--resume`` and ``merge-lmdb`` can refuse mismatches.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Protocol, Tuple

from ...loaders.caffe_lmdb import release_env, shared_env
from ...outputs import remove, swap_in

MANIFEST = "build.json"
SKIPPED = "skipped.txt"
LABELS = "labels.txt"
MEAN_SUM = "mean_sum.npy"
FORMAT = "feedstock.build/1"


def partial_path(out: str) -> str:
    """Where a build of ``out`` writes until it is complete."""
    return out.rstrip("/") + ".partial"


def remove_paths(*paths: str) -> None:
    """Delete each of ``paths`` that exists, folder or file (a stale work folder)."""
    for path in paths:
        remove(path)


def prepare_output(out: str, *, force: bool, resume: bool) -> Tuple[str, bool]:
    """Create or reuse ``OUT.partial``; returns (partial dir, whether it is being resumed).

    ``force`` starts a fresh ``OUT.partial`` and keeps ``OUT``: :func:`publish` swaps them at the end."""
    partial = partial_path(out)
    release_tree(out)
    release_tree(partial)
    if force:
        remove_paths(partial)
    elif os.path.lexists(out) and not (resume and os.path.isdir(partial)):  # resuming a --force rebuild
        raise FileExistsError(f"output {out!r} already exists; pass --force to replace it")
    if os.path.isdir(partial):
        if not resume:
            raise FileExistsError(
                f"an interrupted build is at {partial!r}: pass --resume to continue it or --force to start over"
            )
        if not os.path.isfile(os.path.join(partial, MANIFEST)):
            if os.listdir(partial):
                raise ValueError(f"cannot resume: {partial!r} has no {MANIFEST} (not a feedstock build)")
            return partial, False  # killed between mkdir and the first manifest: nothing to keep
        return partial, True
    os.makedirs(partial)
    return partial, False


def read_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read build manifest {path!r}: {e}") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a {FORMAT} manifest (format={manifest.get('format')!r})")
    return manifest


def write_manifest(directory: str, manifest: dict) -> None:
    """Write atomically (temp file + rename) so a kill never leaves half a manifest."""
    path = os.path.join(directory, MANIFEST)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def plan_mismatch(old: dict, new: dict) -> Optional[str]:
    """A readable difference between two plans, or None when they are equal."""
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key}: partial build has {old.get(key)!r}, this build has {new.get(key)!r}"
    return None


@dataclass(frozen=True)
class Skipped:
    """One record that could not be read: which database, its line id, its name, why."""

    split: str
    line_id: int
    name: str
    reason: str

    def line(self) -> str:
        reason = " ".join(self.reason.split())  # one line per record, whatever the message
        return f"{self.split or '-'}\t{self.line_id}\t{self.name}\t{reason}\n"

    @classmethod
    def parse(cls, line: str) -> "Skipped":
        split, line_id, name, reason = line.rstrip("\n").split("\t", 3)
        return cls("" if split == "-" else split, int(line_id), name, reason)


class SkippedLog:
    """``skipped.txt``: tab-separated ``split line_id name reason``; appended and flushed per record."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, SKIPPED)
        self.entries: List[Skipped] = []
        if os.path.isfile(self.path):
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                self.entries = [Skipped.parse(line) for line in f if line.strip()]

    def keep_before(self, split: str, line_id: int) -> None:
        """On resume: forget this split's entries at or after ``line_id`` (they are redone)."""
        self.entries = [e for e in self.entries if e.split != split or e.line_id < line_id]
        self._rewrite()

    def add(self, entry: Skipped) -> None:
        self.entries.append(entry)
        # Flushed per record: a killed build keeps the entries of everything it committed.
        with open(self.path, "a", encoding="utf-8", errors="surrogateescape") as f:
            f.write(entry.line())

    def _rewrite(self) -> None:
        if not self.entries:
            if os.path.exists(self.path):
                os.remove(self.path)
            return
        with open(self.path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.writelines(e.line() for e in self.entries)

    def count(self, split: str) -> int:
        return sum(1 for e in self.entries if e.split == split)


def iter_db(path: str) -> Iterator[Tuple[bytes, bytes]]:
    """(key, value) of an LMDB in key order, through the process's shared read env (docs/caffe-compat.md, note 22)."""
    yield from shared_env(path).txn().cursor()  # type: ignore[misc]  # buffers=False: bytes


class Hasher(Protocol):
    """What a checksum is fed through: a hashlib object's ``update``."""

    def update(self, data: bytes, /) -> None: ...


def checksum_record(h: Hasher, key: bytes, value: bytes) -> None:
    """Feed one record to a :func:`db_checksum` sha256 ``h``: ``len(key) key len(value) value``."""
    h.update(len(key).to_bytes(8, "little") + key + len(value).to_bytes(8, "little"))
    h.update(value)


def db_checksum(path: str) -> Dict[str, object]:
    """Record count, first/last key and sha256 over ``len(key) key len(value) value`` in key order."""
    h = hashlib.sha256()
    count, first, last = 0, None, None
    for key, value in iter_db(path):
        checksum_record(h, key, value)
        first = key if first is None else first
        last, count = key, count + 1
    as_text = lambda k: None if k is None else k.decode("utf-8", "backslashreplace")  # noqa: E731
    return {"records": count, "sha256": h.hexdigest(), "first_key": as_text(first), "last_key": as_text(last)}


def write_labels(directory: str, names: List[str]) -> str:
    """``labels.txt``: class name i on line i (DIGITS layout)."""
    path = os.path.join(directory, LABELS)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{name}\n" for name in names)
    return path


def publish(partial: str, out: str) -> None:
    """The last step: ``OUT.partial`` becomes ``OUT``; a previous ``OUT`` (``--force``) is removed only after."""
    release_tree(partial)
    release_tree(out)
    swap_in(partial, out)


def release_tree(root: str) -> None:
    """Close this process's cached read envs on ``root`` and its split databases: a replaced or
    renamed database must not be read through an env opened on the old files (docs/caffe-compat.md, note 22)."""
    for path in (root, db_dir(root, "train"), db_dir(root, "val")):
        release_env(path)


def db_dir(root: str, split_name: str) -> str:
    return os.path.join(root, f"{split_name}_lmdb") if split_name else root


def is_build_output(path: str) -> bool:
    return Path(path, MANIFEST).is_file()
