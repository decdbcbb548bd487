"""The ray engine's batch stream: calls to the actor pool, bounded in flight, batches handed out in order.

Each call asks one actor for one or more consecutive batches (cheap batches are
grouped so a call carries at least ``MIN_CALL_S`` of work: a Ray actor call costs
about a millisecond here, see bench/bench_ray.py). At most ``window`` batches are
issued or waiting to be taken (``PER_ACTOR`` groups per ready actor, at least the
loader's ``prefetch``), at most ``PER_ACTOR`` calls queue on one actor, so
a new actor (a node that joined) gets work as soon as it answers.

Faults: a call whose actor died or whose node left (RayActorError, or its result
lost with the node) is not retried by Ray; its batches go back to the front of
the queue and are made by another actor. A batch is a pure function of its
position, so the bytes do not depend on who made it or how often.
Repositioning (:meth:`RayRun.restart`) moves to a new generation: results of
older calls are ignored when they arrive.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple, cast

import numpy as np

from ..errors import WorkerError, WorkerTimeout
from ..pipeline.sampler import Sampler
from ..pipeline.stats import BadRecords, RunStats
from ..rng import MAX_EPOCH
from .ray_maker import Made
from .ray_pool import Actor, ActorPool

if TYPE_CHECKING:
    from ray import ObjectRef

Pos = Tuple[int, int]  # (epoch, batch k)
MIN_CALL_S = 0.02  # work per call: Ray's per-call cost stays a few per cent of it
MAX_GROUP = 16
PER_ACTOR = 2  # calls queued per actor: one runs while the next one's arguments arrive
POLL_S = 0.25  # ray.wait slices: the pool is grown in between


@dataclass(eq=False)
class Call:
    actor: Actor
    positions: List[Pos]
    gen: int


class RayRun:
    """Issues batches to ``pool`` from ``(epoch, start)`` on, epoch after epoch; :meth:`take` hands them out."""

    def __init__(self, ray: ModuleType, pool: ActorPool, sampler: Sampler, epoch: int, start: int, *, window: int,
                 timeout: Optional[float], bad: BadRecords):
        self.ray, self.pool, self.sampler, self.window, self.bad = ray, pool, sampler, window, bad
        self.timeout = timeout
        self.lost_errors = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
                            ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)
        self.gen = 0
        self.horizon: Optional[Pos] = None  # first position not to issue (None: go on into later epochs)
        self.calls: Dict[ObjectRef, Call] = {}  # result ref -> call, of every generation
        self.redone = self.discarded = 0
        self.made_by: Counter = Counter()  # node id -> batches made there (this run's, delivered or not)
        self._cost = [0.0, 0]  # actor seconds and batches: the grouping estimate
        self._reset((epoch, start))

    def _reset(self, pos: Pos) -> None:
        self.pos = self._issue = pos
        self._ready: Dict[Pos, Made] = {}
        self._flying: set = set()  # positions of this generation in calls not answered yet
        self._redo: List[Pos] = []

    def restart(self, epoch: int, start: int) -> None:
        """Forget everything issued and continue from ``(epoch, start)``."""
        self.discarded += len(self._ready) + len(self._flying) + len(self._redo)
        self.gen += 1
        self._reset((epoch, start))

    def use_sampler(self, sampler: Sampler) -> None:
        """Batches of ``sampler`` (another seed) from now on; what was issued is discarded."""
        self.restart(*self.pos)
        self.sampler = sampler

    # ----- issuing -----------------------------------------------------------------------------
    def _after(self, pos: Pos) -> Pos:
        epoch, k = pos
        return (epoch, k + 1) if k + 1 < self.sampler.num_batches else (epoch + 1, 0)

    def _may_issue(self, pos: Pos) -> bool:
        return pos[0] < MAX_EPOCH and (self.horizon is None or pos < self.horizon)

    def group(self) -> int:
        seconds, batches = self._cost
        if not batches:
            return 1
        return int(max(1, min(MAX_GROUP, MIN_CALL_S // max(seconds / batches, 1e-9))))

    def _next_positions(self, want: Pos) -> List[Pos]:
        if self._redo:  # lost work first, the awaited batch before the rest
            self._redo.sort()
            count = min(len(self._redo), self.group())
            redo, self._redo = self._redo[:count], self._redo[count:]
            return redo
        # the window follows the pool: PER_ACTOR calls of a group each, at least ``window`` batches
        window = max(self.window, PER_ACTOR * self.group() * len(self.pool.ready))
        room = window - len(self._ready) - len(self._flying)
        if self._issue == want:
            room, group = max(room, 1), 1  # the awaited batch alone: it is wanted now
        else:
            group = self.group()
        positions: List[Pos] = []
        while len(positions) < min(group, room) and self._may_issue(self._issue):
            positions.append(self._issue)
            self._issue = self._after(self._issue)
        return positions

    def _submit(self, want: Pos) -> None:
        while True:
            actor = self.pool.pick(PER_ACTOR)
            if actor is None:
                return
            positions = self._next_positions(want)
            if not positions:
                return
            chunks = [(e, k, self.sampler.batch_rows(k)) for e, k in positions]
            ref = actor.handle.make.remote(self.sampler.seed, chunks)
            actor.busy += 1
            self.calls[ref] = Call(actor, positions, self.gen)
            self._flying.update(positions)

    # ----- collecting --------------------------------------------------------------------------
    def _answered(self, ref: ObjectRef) -> None:
        call = self.calls.pop(ref)
        call.actor.busy -= 1
        current = call.gen == self.gen
        if current:
            self._flying.difference_update(call.positions)
        try:
            node_id, made = self.ray.get(ref)
        except self.lost_errors as exc:  # the actor or its node is gone: the batches are made elsewhere
            self.pool.drop(call.actor, exc)
            if current:
                self._redo.extend(call.positions)
                self.redone += len(call.positions)
            return
        except self.ray.exceptions.RayError as exc:
            raise WorkerError(f"Ray failed to make batches {call.positions} (epoch, batch): {exc}") from None
        self.made_by[node_id] += len(made)
        for entry in made:
            self._cost[0] += entry[3][0] + entry[3][2]
            self._cost[1] += 1
            if current:
                self._ready[(entry[0], entry[1])] = entry

    def _wait(self) -> bool:
        """Wait a slice for any call or starting actor; True when something answered."""
        refs = [*self.calls, *self.pool.starting]
        if not refs:
            time.sleep(POLL_S)  # no actor yet (the cluster has no free CPU): the pool grows when one appears
            return False
        done, rest = self.ray.wait(refs, num_returns=1, timeout=POLL_S, fetch_local=True)
        if done and rest:  # whatever else is ready too, without waiting
            done += self.ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=True)[0]
        for ref in done:
            if ref in self.pool.starting:
                self.pool.on_check(ref)
            else:
                self._answered(ref)
        return bool(done)

    def take(self, stats: RunStats) -> Tuple[Dict[str, np.ndarray], int]:
        """The next batch in order (arrays in Ray's object store) and its rows; raises its error."""
        want = self.pos
        ready = len(self._ready)
        t0 = last = time.monotonic()
        while want not in self._ready:
            self.pool.grow()
            self._submit(want)
            if self._wait():
                last = time.monotonic()
            elif self.timeout is not None and time.monotonic() - last > self.timeout:
                raise WorkerTimeout(f"batch {want[1]} of epoch {want[0]} was not made within {self.timeout:g} s "
                                    f"({len(self.pool.ready)} Ray actors ready, {len(self.pool.starting)} "
                                    "starting; does the cluster have free CPUs?)")
        epoch, k, arrays, result, error = self._ready.pop(want)
        rows = self.sampler.batch_rows(k)
        stats.on_chunk(rows, result[0], result[1], result[2])
        stats.on_batch(rows, time.monotonic() - t0, ready, len(self._flying))
        self.pos = self._after(want)
        self.pool.grow()
        self._submit(self.pos)  # refill the window now, not at the next take
        if error is not None:
            raise WorkerError(f"a Ray actor failed on batch {k} of epoch {epoch}: {error.message}",
                              key=error.key, worker_traceback=error.traceback)
        if result[3]:
            self.bad.add(epoch, result[3])  # counted when delivered: discarded batches count nothing
        return cast(Dict[str, np.ndarray], arrays), rows

    def close(self) -> None:
        self.gen += 1
        self.calls.clear()
        self._reset(self.pos)
