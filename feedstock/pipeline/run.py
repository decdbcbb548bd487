"""The batch stream: hand chunks of batches to workers, reorder completions, hand batches out in order.

A :class:`Run` goes from a start position ``(epoch, batch)`` on, epoch after
epoch: once the last batch of an epoch is issued it issues the next epoch's first
batches into free slots (unless told to stop at a ``horizon``), so a consumer that
continues with the next epoch does not wait for a decode when it starts. Moving
elsewhere (:meth:`Run.restart`) discards the issued work: the generation number
published in the ring's last control entry moves on, workers skip the chunks still
queued for them (see :mod:`.fill`), and the few chunks being filled are waited out.
A task error is raised when its batch is due, so batches before it are delivered.

Work split ("auto"): a batch holding at least ``MIN_CHUNK_S`` of work per part is split
across workers (the first batch of a pass arrives early, an epoch's end leaves no worker
idle); cheap batches go whole, several to a task when there are slots enough. The
measurements behind this are in bench/README.md; the design in docs/pipeline.md.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from ..errors import WorkerError
from ..protocols import TaskPool
from ..rng import MAX_EPOCH  # the per-sample rng key's epoch bits bound the epochs a run issues
from .sampler import Sampler
from .stats import BadRecords, RunStats
from .worker import ErrorInfo

# A task should carry at least this much work: a pipe round trip costs 0.1-0.2 ms here.
MIN_CHUNK_S = 0.005

Pos = Tuple[int, int]  # (epoch, batch k)


class InlinePool:
    """``workers=0``: the ProcessPool interface, running each task in this process when awaited."""

    def __init__(self, handler: Callable[[Any], Any], describe: Callable[[int, Any], str]):
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
            error = ErrorInfo.of(exc).error("the in-process worker", None, lambda: self.describe(0, payload))
            error.task_id = tid  # type: ignore[attr-defined]
            raise error from exc

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


class Run:
    """Issues tasks into free slots and hands out ``(epoch, k, slot, rows)`` in order, across epochs."""

    def __init__(self, pool: TaskPool, sampler: Sampler, epoch: int, start: int, *, slots: int, workers: int,
                 bad: BadRecords, ctl: Optional[np.ndarray] = None, split: str = "auto"):
        self.pool, self.sampler, self.slots, self.bad, self.ctl = pool, sampler, slots, bad, ctl
        self.workers, self.split = max(1, workers), split
        self.horizon: Optional[Pos] = None  # first position not to issue (None: go on into later epochs)
        self.gen = 0
        self.discarded = 0  # batches issued, then dropped by a restart
        self._cost = [0.0, 0]  # worker seconds and rows filled so far: the split/group estimate
        self.resets = -1
        self._publish_gen()
        self._reset((epoch, start))

    def _reset(self, pos: Pos) -> None:
        self.pos = self._issue = pos  # the next batch to hand out / to issue
        self._free: Deque[int] = deque(range(self.slots))
        self._held: List[int] = []  # the slot handed out last (freed by the next take)
        self._leased: List[int] = []  # slots handed out as leases (freed by release_slot)
        self.resets += 1  # tells a late lease release from a current one
        self._owner: Dict[int, List[Tuple[Pos, int]]] = {}  # task id -> [(position, rows), ...]
        self._remaining: Dict[Pos, int] = {}  # issued position -> unfinished chunks
        self._slot_of: Dict[Pos, int] = {}
        self._bad_of: Dict[Pos, list] = {}
        self._errors: Dict[Pos, BaseException] = {}

    def _publish_gen(self) -> None:
        if self.ctl is not None:
            self.ctl[-1] = self.gen

    def restart(self, epoch: int, start: int, timeout: float) -> bool:
        """Discard every issued batch and continue from ``(epoch, start)``; False if work did not stop in time."""
        done = True
        self.discarded += len(self._remaining)
        if self._owner or self.pool.outstanding:
            self.gen += 1
            self._publish_gen()  # before the drain: queued chunks of the old generation are skipped
            done = self.pool.drain(timeout=timeout)
        self._reset((epoch, start))
        return done

    def issued(self) -> List[Pos]:
        """Positions issued and not yet handed out, in order."""
        return sorted(self._remaining)

    # ----- issuing ---------------------------------------------------------------------------
    def _after(self, pos: Pos) -> Pos:
        epoch, k = pos
        return (epoch, k + 1) if k + 1 < self.sampler.num_batches else (epoch + 1, 0)

    def _may_issue(self, pos: Pos) -> bool:
        return pos[0] < MAX_EPOCH and (self.horizon is None or pos < self.horizon)

    def _row_cost(self) -> Optional[float]:
        seconds, rows = self._cost
        return seconds / rows if rows else None

    def _parts(self, rows: int, awaited: bool) -> int:
        """Tasks that share one batch's rows (see the module docstring)."""
        if self.split == "none" or self.workers == 1:
            return 1
        if self.split == "all" or awaited:
            return self.workers
        cost = self._row_cost()
        if self.split == "first" or cost is None:
            return 1
        return int(min(self.workers, max(1, rows * cost // MIN_CHUNK_S)))

    def _group(self) -> int:
        """Whole batches per task: several when one batch is far cheaper than a message (auto only)."""
        cost = self._row_cost()
        if self.split != "auto" or cost is None or self.slots < 3 * self.workers:
            return 1  # with fewer slots grouping would starve workers (it waits for free slots)
        batch_s = max(cost * self.sampler.batch_size, 1e-9)
        return int(max(1, min(MIN_CHUNK_S // batch_s, self.slots // self.workers)))

    def _submit(self, positions: List[Pos], awaited: Pos) -> None:
        chunks: List[Tuple[int, ...]] = []
        for pos in positions:
            rows = self.sampler.batch_rows(pos[1])
            parts = split_rows(rows, self._parts(rows, pos == awaited) if len(positions) == 1 else 1)
            slot = self._slot_of[pos] = self._free.popleft()
            self._remaining[pos] = len(parts)
            chunks.extend((pos[0], pos[1], slot, lo, hi, self.gen) for lo, hi in parts)
        tasks = [tuple(chunks)] if len(positions) > 1 else [(c,) for c in chunks]
        for task in tasks:
            self._owner[self.pool.submit(task)] = [((c[0], c[1]), c[4] - c[3]) for c in task]

    def fill(self, awaited: Optional[Pos] = None) -> None:
        """Issue batches into the free slots (the awaited one alone and split, for its latency)."""
        awaited = self.pos if awaited is None else awaited
        while self._free and self._may_issue(self._issue):
            group = 1 if self._issue == awaited else self._group()
            if len(self._free) < group and self._issue > awaited:
                break  # the awaited batch is in flight: gather slots for a whole group
            positions = [self._issue]
            while len(positions) < min(group, len(self._free)) and self._may_issue(self._after(positions[-1])):
                positions.append(self._after(positions[-1]))
            self._submit(positions, awaited)
            self._issue = self._after(positions[-1])

    # ----- handing out -----------------------------------------------------------------------
    def release(self) -> None:
        """The consumer asked for another batch: the slots handed out so far may be refilled."""
        self._free.extend(self._held)
        self._held.clear()

    def release_slot(self, slot: int, resets: int) -> None:
        """A leased batch's slot may be refilled (a no-op once the run was reset since the lease)."""
        if resets == self.resets and slot in self._leased:
            self._leased.remove(slot)
            self._free.append(slot)
            self.fill()  # workers need not wait for the next take to use it

    def take(self, stats: RunStats, keep: bool = False) -> Tuple[int, int, int, int]:
        """The next batch, in order: ``(epoch, k, slot, rows)``; raises its task's error.
        ``keep``: this batch is a lease, held until :meth:`release_slot`."""
        self.release()
        want = self.pos
        if want not in self._remaining and not self._free:
            raise RuntimeError(f"all {self.slots} slots are held by leased batches: release one first")
        self.fill(want)
        ready = list(self._remaining.values()).count(0)  # per batch: C-speed counting
        t0 = time.perf_counter()
        while self._remaining[want]:
            self._collect(want, stats)
        wait_s = time.perf_counter() - t0
        rows = self.sampler.batch_rows(want[1])
        del self._remaining[want]
        in_flight = len(self._remaining) - list(self._remaining.values()).count(0)
        stats.on_batch(rows, wait_s, ready, in_flight)
        slot = self._slot_of.pop(want)
        (self._leased if keep else self._held).append(slot)
        self.pos = self._after(want)
        error = self._errors.pop(want, None)
        if error is not None:
            raise error
        bad = self._bad_of.pop(want, None)
        if bad:
            self.bad.add(want[0], bad)  # counted when delivered: discarded batches count nothing
        return want[0], want[1], slot, rows

    def _collect(self, want: Pos, stats: RunStats) -> None:
        try:
            done = self.pool.results()
        except WorkerError as exc:
            self._defer(exc, want)
            return
        for tid, results in done:
            for (pos, rows), (read_s, decode_s, transform_s, bad) in zip(self._owner.pop(tid), results):
                self._remaining[pos] -= 1
                self._cost[0] += read_s + transform_s
                self._cost[1] += rows
                stats.on_chunk(rows, read_s, decode_s, transform_s)
                if bad:
                    self._bad_of.setdefault(pos, []).extend(bad)

    def _defer(self, exc: WorkerError, want: Pos) -> None:
        """A failed task for a later batch is raised when that batch is due (the earlier ones are fine)."""
        owners = self._owner.pop(getattr(exc, "task_id", -1), None)  # task ids are >= 0
        if owners is None or any(pos <= want for pos, _ in owners):
            raise exc
        for pos, _rows in owners:
            self._remaining[pos] -= 1
            self._errors.setdefault(pos, exc)
