"""The plan of a build: which record goes to which database under which key, before any pixel is read.

A plan is a pure function of the source listing and (shuffle, seed, val_fraction,
shard): a resumed build and every shard of a job array recompute the same plan
and check its digest, so keys and order never depend on timing or worker count.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np

from ..stream.kinds import KINDS as SOURCE_KINDS
from ..stream.kinds import guess_kind, kind_of
from .listing import Listing, ListingOptions
from .lmdb_writer import caffe_key

# the kinds build-lmdb lists: the registry's entries with a listing hook, images first
IMAGE_KINDS = tuple(k.name for k in SOURCE_KINDS.values() if k.listing is not None and k.images)
TABLE_KINDS = tuple(k.name for k in SOURCE_KINDS.values() if k.listing is not None and not k.images)
KINDS = IMAGE_KINDS + TABLE_KINDS


@dataclass
class Split:
    """One output database: the listing indices in line order (line_id = position)."""

    name: str  # "" (OUT itself), "train" or "val"
    order: np.ndarray  # int64 listing indices
    lo: int = 0  # this shard's range of line ids [lo, hi)
    hi: int = -1
    digest: str = field(default="")

    def __post_init__(self) -> None:
        if self.hi < 0:
            self.hi = len(self.order)

    @property
    def db_dir(self) -> str:
        """Database directory relative to OUT."""
        return f"{self.name}_lmdb" if self.name else ""


def detect_kind(src: str) -> str:
    """The source kind of ``src`` as the stream guesses it; it must be one build-lmdb lists (not an LMDB)."""
    kind = guess_kind(src)
    if kind not in KINDS:
        raise ValueError(f"{src!r} is a {kind} database already; build-lmdb reads {', '.join(KINDS)} sources")
    return kind


def make_listing(src: str, kind: str, options: ListingOptions, *, exclude: Sequence[str] = ()) -> Listing:
    """The listing of ``src`` read as ``kind``, by the kind's build hook in the registry
    (:mod:`feedstock.stream.kinds`); a folder source never scans the folders in ``exclude``."""
    hook = kind_of(kind).listing
    if hook is None:
        raise ValueError(f"build-lmdb does not read {kind} sources; it reads {', '.join(KINDS)}")
    return hook(src, options, exclude)


def line_order(n: int, *, shuffle: bool, seed: int) -> np.ndarray:
    """Listing indices in line order: identity, or a permutation that only ``seed`` decides."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    rng = np.random.Generator(np.random.Philox(key=int(seed)))
    return rng.permutation(n).astype(np.int64)


def split_val(order: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-class validation split of ``order`` (DIGITS style), keeping line order inside each part.

    Each class sends ``round(n * fraction)`` records to val (at least one when the
    class has two or more), chosen by a permutation from ``seed`` and the class label.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction={fraction!r} must be in (0, 1)")
    is_val = np.zeros(len(order), dtype=bool)
    ordered_labels = labels[order]
    for label in np.unique(ordered_labels):
        members = np.flatnonzero(ordered_labels == label)
        n_val = int(round(len(members) * fraction))
        if n_val == 0 and len(members) >= 2:
            n_val = 1
        n_val = min(n_val, len(members) - 1)
        rng = np.random.Generator(np.random.Philox(key=[int(seed), int(label) & (2**64 - 1)]))
        is_val[members[rng.permutation(len(members))[:n_val]]] = True
    return order[~is_val], order[is_val]


def shard_range(n: int, shard: Tuple[int, int]) -> Tuple[int, int]:
    """Contiguous line-id range [lo, hi) of shard ``i`` of ``count``; shards cover [0, n) in order."""
    i, count = shard
    return i * n // count, (i + 1) * n // count


def make_splits(listing: Listing, *, shuffle: bool, seed: int, val_fraction: float,
                shard: Tuple[int, int] = (0, 1)) -> List[Split]:
    """The databases this build writes, with this shard's line ranges and each split's digest."""
    order = line_order(len(listing), shuffle=shuffle, seed=seed)
    if val_fraction > 0:
        train, val = split_val(order, listing.labels, val_fraction, seed)
        splits = [Split("train", train), Split("val", val)]
    else:
        splits = [Split("", order)]
    for split in splits:
        split.digest = split_digest(listing, split.order)
        split.lo, split.hi = shard_range(len(split.order), shard)
    return splits


def split_digest(listing: Listing, order: np.ndarray) -> str:
    """sha256 over (line id, name, label) of every record of a split: what its keys and labels will be."""
    h = hashlib.sha256()
    for line_id, idx in enumerate(order.tolist()):
        h.update(f"{line_id}\0{listing.names[idx]}\0{int(listing.labels[idx])}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def record_key(line_id: int, name: str) -> bytes:
    """``%08d_<name>`` (convert_imageset), or ``%08d`` when the record has no name (MNIST tool)."""
    return caffe_key(line_id, name or None).encode("utf-8", "surrogateescape")


def key_line_id(key: bytes) -> int:
    """The line id a key starts with; ValueError when the key has no ``%08d`` prefix."""
    digits = key.split(b"_", 1)[0]
    if not digits.isdigit():
        raise ValueError(f"key {key!r} does not start with a %08d line number")
    return int(digits)


def chunks(n_from: int, n_to: int, size: int) -> Sequence[Tuple[int, int]]:
    """[lo, hi) line-id ranges of at most ``size`` records."""
    return [(lo, min(lo + size, n_to)) for lo in range(n_from, n_to, size)]
