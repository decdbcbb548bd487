"""Worker-side batch filling: read records, transform with per-sample rngs, write rows into a slot.

A task is a tuple of chunks ``(epoch, k, slot, lo, hi, gen)``: rows ``lo:hi`` of batch ``k``. The
worker recomputes the batch's indices from its own copy of the Sampler, so no index
array crosses the pipe; it answers with a few floats and the (rare) bad records.
A chunk whose generation ``gen`` is no longer the one published in the ring's last
control entry was discarded by the main process (the consumer moved elsewhere):
it is skipped without reading anything.

Batch fast path, for a :class:`~feedstock.protocols.BatchReadable` source whose
transforms are all :class:`~feedstock.protocols.BatchTransform` (or none):
``source.read_batch(indices)`` then each transform's ``apply_batch(fields)``;
with no transforms the source reads straight into the slot rows (``out=``).
Either may answer ``NotImplemented`` (encoded records, a random transform): that
chunk and every later one of this worker go row by row. Any exception in the fast
path also sends the chunk row by row, which re-reads the records one at a time and
so reports the bad record's key. Both paths write by :mod:`feedstock.casting`'s
rule: a record whose shape or dtype does not fit the batch spec is an error
naming its key (skipped and reported under ``on_error="skip"``), never cast.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from types import NotImplementedType
from typing import Dict, List, Optional, Tuple, Union, cast

import numpy as np

from ..casting import write_fields
from ..errors import RECORD_FIXES, TooManyBadRecords
from ..protocols import BatchReadable, BatchTransform, DecodeTimed, Source, Transform
from ..rng import SampleRngs, sample_rng
from ..spec import Sample, Spec, merge_unknown, spec_of
from ..transforms.base import Compose
from .sampler import Sampler
from .shm import SlotLayout, SlotRing

log = logging.getLogger(__name__)

Task = Tuple[int, int, int, int, int, int]  # one chunk: epoch, batch k, slot, first row, end row, generation
BadRecord = Tuple[int, str, str]  # dataset index, key, error message
FillResult = Tuple[float, float, float, Tuple[BadRecord, ...]]  # read s (decode s of it), transform s, bad
SKIPPED: FillResult = (0.0, 0.0, 0.0, ())
_MAX_MESSAGE = 300


@dataclass
class FillPlan:
    """What a worker needs, built in the main process; calling it in a worker attaches the slots."""

    source: Source
    compose: Compose
    sampler: Sampler
    layout: SlotLayout
    skip: bool
    slot_names: Tuple[str, ...] = ()
    ctl_name: Optional[str] = None

    def __call__(self, wid: int) -> "Filler":
        ring = SlotRing.attach(self.layout, self.slot_names, self.ctl_name)
        # copy.copy goes through __getstate__: a forked worker drops the parent's open
        # handles (LMDB env, HDF5 file) and opens its own, sharing the arrays copy-on-write.
        return Filler(self, ring, wid, copy.copy(self.source))


def record_key(source: Source, index: int) -> str:
    """``source.key(i)``, or the index when the source cannot name it."""
    try:
        return str(source.key(index))
    except Exception:  # a message about the record must not fail on its name
        return f"index {index}"


def fast_path_ok(source: Source, compose: Compose) -> bool:
    """Whether the batch fast path can be tried: a BatchReadable source, every transform a BatchTransform."""
    return isinstance(source, BatchReadable) and all(isinstance(t, BatchTransform) for t in compose.transforms)


def apply_batch(compose: Compose, fields: Union[Sample, NotImplementedType]) -> Union[Sample, NotImplementedType]:
    """Each transform's ``apply_batch`` in turn; ``NotImplemented`` as soon as the read or one transform answers it."""
    for t in compose.transforms:
        if fields is NotImplemented:
            break
        fields = cast(BatchTransform, t).apply_batch(fields)
    return fields


class Filler:
    """The handler run per task in a worker (or in-process when ``workers=0``)."""

    def __init__(self, plan: FillPlan, ring: SlotRing, wid: int, source: Source):
        self.plan, self.ring, self.wid, self.source = plan, ring, wid, source
        self.sampler, self.compose = plan.sampler, plan.compose
        self.rngs = SampleRngs(plan.sampler.seed)
        self.fast = fast_path_ok(source, plan.compose)
        # no transforms: the source reads straight into the slot rows
        self.into = self.fast and not plan.compose.transforms
        self.timed = isinstance(source, DecodeTimed)  # the source counts its decode seconds
        self._rows: Dict[Tuple[int, int], Dict[str, np.ndarray]] = {}

    def __call__(self, chunks: Tuple[Task, ...]) -> Tuple[FillResult, ...]:
        """One task: rows of one batch, or several whole (cheap) batches."""
        return tuple(self.fill(chunk) for chunk in chunks)

    def fill(self, chunk: Task) -> FillResult:
        epoch, k, slot, lo, hi, gen = chunk
        ctl = self.ring.ctl
        if ctl is not None and ctl[-1] != gen:
            return SKIPPED  # discarded by the main process while queued here
        order = self.sampler.epoch_order(epoch)
        base = k * self.sampler.batch_size
        times = [0.0, 0.0]
        decoded = cast(DecodeTimed, self.source).decode_s if self.timed else 0.0
        bad: List[BadRecord] = []
        if not (self.fast and self._fill_fast(order[base + lo : base + hi], slot, lo, hi, times)):
            for j in range(lo, hi):
                self._fill_row(epoch, order, base + j, slot, j, times, bad)
        self._progress(-1)
        decode_s = cast(DecodeTimed, self.source).decode_s - decoded if self.timed else 0.0
        return times[0], decode_s, times[1], tuple(bad)

    def _progress(self, index: int) -> None:
        if self.ring.ctl is not None:
            self.ring.ctl[self.wid] = index  # lets the main process name a hung record

    def _row(self, slot: int, j: int) -> Dict[str, np.ndarray]:
        rows = self._rows.get((slot, j))
        if rows is None:
            rows = {name: view[j, ...] for name, view in self.ring.slots[slot].items()}  # 0-d views too
            self._rows[(slot, j)] = rows
        return rows

    def _write(self, epoch: int, index: int, slot: int, j: int, times: List[float]) -> None:
        self._progress(index)
        t0 = time.perf_counter()
        sample = self.source[index]
        t1 = time.perf_counter()
        self.compose.into(sample, self.rngs(epoch, index), self._row(slot, j))
        times[0] += t1 - t0
        times[1] += time.perf_counter() - t1

    def _fill_row(self, epoch: int, order: np.ndarray, pos: int, slot: int, j: int,
                  times: List[float], bad: List[BadRecord]) -> None:
        index = int(order[pos])
        try:
            self._write(epoch, index, slot, j, times)
            return
        except Exception as exc:
            if not self.plan.skip:
                exc.record_key = record_key(self.source, index)  # type: ignore[attr-defined]
                exc.record_fixes = RECORD_FIXES  # type: ignore[attr-defined]  # unless it names its own
                raise
            bad.append(self._bad(index, exc))
        # on_error="skip": walk on through this rank's order until a record works.
        for step in range(1, len(order)):
            index = int(order[(pos + step) % len(order)])
            try:
                self._write(epoch, index, slot, j, times)
                return
            except Exception as exc:  # counted and reported by the main process
                bad.append(self._bad(index, exc))
        raise TooManyBadRecords(f"every one of the {len(order)} records of this shard failed")

    def _bad(self, index: int, exc: Exception) -> BadRecord:
        message = f"{type(exc).__name__}: {exc}"
        return index, record_key(self.source, index), message[:_MAX_MESSAGE]

    def _fill_fast(self, indices: np.ndarray, slot: int, lo: int, hi: int, times: List[float]) -> bool:
        """Whole chunk at once: ``read_batch`` then each transform's ``apply_batch``; False -> per row."""
        self._progress(int(indices[0]))
        rows = {name: view[lo:hi] for name, view in self.ring.slots[slot].items()}
        try:
            t0 = time.perf_counter()
            fields = cast(BatchReadable, self.source).read_batch(indices, out=rows if self.into else None)
            t1 = time.perf_counter()
            fields = apply_batch(self.compose, fields)
            if fields is NotImplemented:  # encoded records, a random transform: rows from now on
                self.fast = False
                return False
            if not self.into:
                write_fields(fields, rows)  # shape or dtype off: the per-row path names the record
        except Exception as exc:  # the per-row path re-reads and reports with record keys
            log.debug("batch fast path failed (%s); filling row by row", exc)
            return False
        times[0] += t1 - t0
        times[1] += time.perf_counter() - t1
        return True


def batch_spec(source: Source, compose: Transform, seed: int) -> Spec:
    """Per-sample shapes and dtypes of a batch: declared by the transforms, or fixed by probing record 0
    (rng of (seed, 0, 0)) where a dim is known only per record."""
    try:
        declared: Optional[Spec] = compose.output_spec(source.spec())
    except NotImplementedError:  # a source or transform that declares nothing
        declared = None
    if declared is not None and all(s.fixed for s in declared.values()):
        return dict(declared)
    try:
        probe = compose(source[0], sample_rng(seed, 0, 0))
    except Exception as exc:
        raise ValueError(f"could not fix the batch shapes by probing record {record_key(source, 0)}: {exc}") from exc
    probed = spec_of(probe)
    return probed if declared is None else merge_unknown(declared, probed)
