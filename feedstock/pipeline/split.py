"""WorkSplit: how a run spreads batches over workers (the policy; :mod:`.run` does the bookkeeping).

``"auto"``: a batch holding at least ``MIN_CHUNK_S`` of work per part is split
across workers (the first batch of a pass arrives early, an epoch's end leaves no
worker idle); cheap batches go whole, several to a task when there are slots
enough. ``"none"``: whole batches, one per task. ``"all"``: every batch split over
every worker. ``"first"``: only the awaited batch is split. The split changes
when rows are filled, never what they hold. The measurements behind "auto" are
in bench/README.md; the design in docs/pipeline.md.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

# A task should carry at least this much work: a pipe round trip costs 0.1-0.2 ms here.
MIN_CHUNK_S = 0.005
SPLITS = ("auto", "none", "all", "first")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} must be one of {SPLITS}")
    return split


def split_rows(rows: int, parts: int) -> List[Tuple[int, int]]:
    """``parts`` near-equal ``(lo, hi)`` ranges covering ``range(rows)``, none empty."""
    parts = max(1, min(parts, rows))
    bounds = [rows * p // parts for p in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


class WorkSplit:
    """Parts per batch and batches per task for one run, from the worker seconds per row seen so far."""

    def __init__(self, mode: str, *, workers: int, slots: int, batch_size: int):
        self.mode, self.workers, self.slots, self.batch_size = check_split(mode), max(1, workers), slots, batch_size
        self.seconds, self.rows = 0.0, 0  # worker seconds and rows filled so far: the cost estimate

    def observe(self, seconds: float, rows: int) -> None:
        self.seconds += seconds
        self.rows += rows

    def row_cost(self) -> Optional[float]:
        return self.seconds / self.rows if self.rows else None

    def parts(self, rows: int, awaited: bool) -> int:
        """Tasks that share one batch's rows (see the module doc)."""
        if self.mode == "none" or self.workers == 1:
            return 1
        if self.mode == "all" or awaited:
            return self.workers
        cost = self.row_cost()
        if self.mode == "first" or cost is None:
            return 1
        return int(min(self.workers, max(1, rows * cost // MIN_CHUNK_S)))

    def group(self) -> int:
        """Whole batches per task: several when one batch is far cheaper than a message (auto only)."""
        cost = self.row_cost()
        if self.mode != "auto" or cost is None or self.slots < 3 * self.workers:
            return 1  # with fewer slots grouping would starve workers (it waits for free slots)
        batch_s = max(cost * self.batch_size, 1e-9)
        return int(max(1, min(MIN_CHUNK_S // batch_s, self.slots // self.workers)))
