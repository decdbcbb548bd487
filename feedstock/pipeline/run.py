"""One pass over an epoch: hand chunks of batches to workers, reorder completions, yield in order.

Work split ("auto"), measured with ``bench/bench_loader.py --split-study`` and
variants on the 2-core machine, 2 workers (rates are noisy there, +-30%):

* Heavy samples (JPEG decode + resize + crop, ~2 ms a row, batches of 256):
  splitting every batch's rows across the workers brought the first batch in
  0.75-0.83 s instead of 1.06 s with whole batches per worker, and raised
  throughput (474-486 -> 562-620/s) because the epoch's last batches no longer
  leave a worker idle. So a batch is split across workers when it holds at least
  ``MIN_CHUNK_S`` of work per part (estimated from the chunks finished so far);
  the first batch of a pass is always split (no estimate yet; arrives early).
* Cheap batches (MNIST rows ~25 us, the batch fast path ~4 us, CSV rows <1 us):
  a round trip through a pipe costs 120-200 us on this VM, so splitting only
  adds messages (MNIST rows: 37-57k/s split vs 41-60k/s whole, no gain).
  With enough slots (``prefetch >= 3 x workers``) several whole batches go in
  one task: Otto-shaped table, prefetch 8: 0.8-2.6M rows/s grouped vs
  0.7-1.7M one batch per task (prefetch 16, grouped: 1.1-2.0M). With fewer slots grouping would starve workers
  (it waits for free slots), so it is off.
"""
from __future__ import annotations

import time
import traceback
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterator, List, Tuple

from ..errors import WorkerError
from .fill import Filler
from .sampler import Sampler
from .stats import BadRecords, RunStats

# A task should carry at least this much work: a pipe round trip costs 0.1-0.2 ms here.
MIN_CHUNK_S = 0.005


class InlinePool:
    """``workers=0``: the ProcessPool interface, running each task in this process when awaited."""

    def __init__(self, handler: Filler, describe: Callable[[int, Any], str]):
        self.handler, self.describe = handler, describe
        self._pending: Deque[Tuple[int, Any]] = deque()
        self._next_tid = 0
        self.restarts = 0
        self.pids: List[int] = []

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    def submit(self, payload: Any) -> int:
        self._pending.append((self._next_tid, payload))
        self._next_tid += 1
        return self._next_tid - 1

    def results(self, timeout: float | None = None) -> List[Tuple[int, Any]]:
        tid, payload = self._pending.popleft()
        try:
            return [(tid, self.handler(payload))]
        except Exception as exc:  # same error type as with workers; the original is chained
            key = getattr(exc, "record_key", None)
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            raise WorkerError(
                f"in-process worker failed on {self.describe(0, payload)}: {type(exc).__name__}: {exc}",
                key=key, worker_traceback=text,
            ) from exc

    def drain(self, timeout: float) -> bool:
        self._pending.clear()
        return True

    def close(self) -> None:
        self._pending.clear()


def split_rows(rows: int, parts: int) -> List[Tuple[int, int]]:
    """``parts`` near-equal ``(lo, hi)`` ranges covering ``range(rows)``, none empty."""
    parts = max(1, min(parts, rows))
    bounds = [rows * p // parts for p in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


class EpochRun:
    """Issues tasks into free slots and yields ``(k, slot, rows)`` for batches ``start..end`` in order."""

    def __init__(self, pool: Any, sampler: Sampler, epoch: int, start: int, *, slots: int, workers: int,
                 split: str, stats: RunStats, bad: BadRecords):
        self.pool, self.sampler, self.epoch, self.start = pool, sampler, epoch, start
        self.slots, self.workers, self.split, self.stats, self.bad = slots, max(1, workers), split, stats, bad
        self._owner: Dict[int, List[Tuple[int, int]]] = {}  # task id -> [(batch k, rows), ...]
        self._remaining: Dict[int, int] = {}  # batch k -> unfinished chunks
        self._slot_of: Dict[int, int] = {}

    def _parts(self, k: int, rows: int) -> int:
        """Tasks that share batch ``k``'s rows (see the module docstring)."""
        if self.split == "none" or self.workers == 1:
            return 1
        if self.split == "all" or k == self.start:
            return self.workers
        cost = self.stats.row_cost()
        if self.split == "first" or cost is None:
            return 1
        return int(min(self.workers, max(1, rows * cost // MIN_CHUNK_S)))

    def _group(self, k: int) -> int:
        """Whole batches per task: several when one batch is far cheaper than a message (auto only)."""
        cost = self.stats.row_cost()
        if self.split != "auto" or cost is None or k == self.start:
            return 1
        if self.slots < 3 * self.workers:
            return 1
        batch_s = max(cost * self.sampler.batch_size, 1e-9)
        return int(max(1, min(MIN_CHUNK_S // batch_s, self.slots // self.workers)))

    def _issue(self, ks: List[int], slots: List[int]) -> None:
        chunks = []
        for k, slot in zip(ks, slots):
            rows = self.sampler.batch_rows(k)
            parts = split_rows(rows, self._parts(k, rows) if len(ks) == 1 else 1)
            self._remaining[k], self._slot_of[k] = len(parts), slot
            chunks.extend((self.epoch, k, slot, lo, hi) for lo, hi in parts)
        tasks = [tuple(chunks)] if len(ks) > 1 else [(c,) for c in chunks]
        for task in tasks:
            self._owner[self.pool.submit(task)] = [(c[1], c[4] - c[3]) for c in task]

    def _fill_slots(self, free: Deque[int], next_issue: int, waiting_for: int) -> int:
        """Issue batches into free slots; returns the next batch to issue."""
        end = self.sampler.num_batches
        while free and next_issue < end:
            group = min(self._group(next_issue), end - next_issue)
            if len(free) < group and next_issue > waiting_for:
                break  # the awaited batch is in flight: gather slots for a whole group
            take = min(group, len(free))
            self._issue(list(range(next_issue, next_issue + take)), [free.popleft() for _ in range(take)])
            next_issue += take
        return next_issue

    def _collect(self) -> None:
        for tid, results in self.pool.results():
            for (k, rows), (read_s, transform_s, bad) in zip(self._owner.pop(tid), results):
                self._remaining[k] -= 1
                self.stats.on_chunk(rows, read_s, transform_s)
                if bad:
                    self.bad.add(self.epoch, bad)

    def __iter__(self) -> Iterator[Tuple[int, int, int]]:
        free: Deque[int] = deque(range(self.slots))
        next_issue = self.start
        for k in range(self.start, self.sampler.num_batches):
            next_issue = self._fill_slots(free, next_issue, k)
            ready = sum(1 for n in self._remaining.values() if n == 0)
            t0 = time.perf_counter()
            while self._remaining[k]:
                self._collect()
            wait_s = time.perf_counter() - t0
            in_flight = sum(1 for n in self._remaining.values() if n)
            self.stats.on_batch(self.sampler.batch_rows(k), wait_s, ready, in_flight)
            slot = self._slot_of.pop(k)
            del self._remaining[k]
            yield k, slot, self.sampler.batch_rows(k)
            free.append(slot)  # the consumer asked for the next batch: this slot may be refilled
