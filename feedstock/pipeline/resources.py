"""What a Loader owns (pool, slot ring) and must release, and the descriptions of its tasks."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union, cast

import numpy as np

from ..protocols import Source
from .fill import Task, record_key
from .pool import ProcessPool
from .run import InlinePool
from .sampler import Sampler
from .shm import SlotRing

_KEYS_SHOWN = 8


class Resources:
    """Held apart from the Loader so its finalizer can release them without keeping the Loader alive."""

    def __init__(self) -> None:
        self.pool: Optional[Union[ProcessPool, InlinePool]] = None
        self.ring: Optional[SlotRing] = None
        self._past_restarts = 0

    def live(self) -> Tuple[Union[ProcessPool, InlinePool], SlotRing]:
        """The pool and the ring of a started loader."""
        if self.pool is None or self.ring is None:
            raise RuntimeError("the loader is not started (or was closed)")
        return self.pool, self.ring

    def restarts(self) -> int:
        return self._past_restarts + (self.pool.restarts if self.pool is not None else 0)

    def close(self) -> None:
        """Workers first (they write into the slots), then the slots; idempotent."""
        pool, ring, self.pool, self.ring = self.pool, self.ring, None, None
        try:
            if pool is not None:
                self._past_restarts += pool.restarts
                pool.close()
        finally:
            if ring is not None:
                ring.close()


def describe_task(source: Source, sampler: Sampler, ctl: Optional[np.ndarray], wid: int, task: object) -> str:
    """``batch k of epoch e (rows lo-hi; records a, b, ...)`` per chunk, plus the record a worker is on."""
    chunks = cast(Sequence[Task], task)  # the pool describes its payloads: this Loader's chunks
    text = " and ".join(_describe_chunk(source, sampler, chunk) for chunk in chunks)
    if ctl is not None and wid < len(ctl) and ctl[wid] >= 0:
        text += f"; it was working on record {record_key(source, int(ctl[wid]))}"
    return text


def _describe_chunk(source: Source, sampler: Sampler, chunk: Task) -> str:
    epoch, k, _slot, lo, hi = chunk[:5]
    indices = sampler.batch(epoch, k)[lo:hi]
    keys = ", ".join(record_key(source, int(i)) for i in indices[:_KEYS_SHOWN])
    more = f" and {len(indices) - _KEYS_SHOWN} more" if len(indices) > _KEYS_SHOWN else ""
    return f"batch {k} of epoch {epoch} (rows {lo}-{hi - 1}; records {keys}{more})"
