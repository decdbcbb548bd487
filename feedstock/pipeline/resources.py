"""What a Loader owns (pool, slot ring) and must release, plus option checks and task descriptions."""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from .fill import record_key
from .sampler import Sampler

_KEYS_SHOWN = 8


class Resources:
    """Held apart from the Loader so its finalizer can release them without keeping the Loader alive."""

    def __init__(self) -> None:
        self.pool: Any = None
        self.ring: Any = None
        self._past_restarts = 0

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


def check_options(*, workers: Union[int, str], prefetch: int, on_error: str, max_bad_fraction: float,
                  timeout: Optional[float]) -> None:
    """ValueError naming the parameter and the value (the seed is the Sampler's: rng.check_seed)."""
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"{workers=} must be an integer >= 0 (0 runs in this process) or 'auto'")
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
        raise ValueError(f"{prefetch=} must be an integer >= 1 (slots, counting the batch being consumed)")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"{on_error=} must be 'raise' or 'skip'")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ValueError(f"{max_bad_fraction=} must be in [0, 1]")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"{timeout=} must be positive seconds or None (wait forever)")


def describe_task(source: Any, sampler: Sampler, ctl: Optional[np.ndarray], wid: int, task: Any) -> str:
    """``batch k of epoch e (rows lo-hi; records a, b, ...)`` per chunk, plus the record a worker is on."""
    text = " and ".join(_describe_chunk(source, sampler, chunk) for chunk in task)
    if ctl is not None and wid < len(ctl) and ctl[wid] >= 0:
        text += f"; it was working on record {record_key(source, int(ctl[wid]))}"
    return text


def _describe_chunk(source: Any, sampler: Sampler, chunk: Any) -> str:
    epoch, k, _slot, lo, hi = chunk[:5]
    indices = sampler.batch(epoch, k)[lo:hi]
    keys = ", ".join(record_key(source, int(i)) for i in indices[:_KEYS_SHOWN])
    more = f" and {len(indices) - _KEYS_SHOWN} more" if len(indices) > _KEYS_SHOWN else ""
    return f"batch {k} of epoch {epoch} (rows {lo}-{hi - 1}; records {keys}{more})"
