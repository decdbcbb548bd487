"""Worker-side batch filling: read records, transform with per-sample rngs, write rows into a slot.

A task is a tuple of chunks ``(epoch, k, slot, lo, hi, gen)``: rows ``lo:hi`` of batch ``k``. The
worker recomputes the batch's indices from its own copy of the Sampler, so no index
array crosses the pipe; it answers with a few floats and the (rare) bad records.
A chunk whose generation ``gen`` is no longer the one published in the ring's last
control entry was discarded by the main process (the consumer moved elsewhere):
it is skipped without reading anything.

Batch fast path: ``source.get_batch(indices)`` then each transform's
``apply_batch(fields)``. Either may answer ``NotImplemented`` (encoded records, a
random transform): that chunk and every later one of this worker go row by row.
Any exception in the fast path also sends the chunk row by row, which re-reads
the records one at a time and so reports the bad record's key.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .. import rng as rng_module
from ..errors import TooManyBadRecords
from ..spec import Spec, merge_unknown, spec_of
from ..transforms.base import Compose
from .sampler import Sampler
from .shm import SlotLayout, SlotRing

log = logging.getLogger(__name__)

Task = Tuple[int, int, int, int, int, int]  # one chunk: epoch, batch k, slot, first row, end row, generation
BadRecord = Tuple[int, str, str]  # dataset index, key, error message
FillResult = Tuple[float, float, float, Tuple[BadRecord, ...]]  # read s (decode s of it), transform s, bad
SKIPPED: FillResult = (0.0, 0.0, 0.0, ())
_MAX_MESSAGE = 300


class SampleRngs:
    """``rng.sample_rng(seed, epoch, i)`` without building a generator per sample.

    Constructing ``Generator(Philox(key=...))`` costs ~20 us (Philox draws OS
    entropy for its unused seed); re-keying one Philox costs ~3 us and yields the
    identical stream. Verified against ``sample_rng`` at construction, with a
    fallback to it should the key layout ever change. The generator returned is
    reused: it is valid for the duration of one sample's transforms.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._bitgen = np.random.Philox(key=0)
        self._gen = np.random.Generator(self._bitgen)
        self._state = self._bitgen.state
        self._shift = getattr(rng_module, "_INDEX_BITS", 40)
        self._zeros = np.zeros(4, dtype=np.uint64)
        self.fast = all(self._same_as_reference(e, i) for e, i in ((0, 0), (3, 12345), (2**20, 2**39 + 7)))
        if not self.fast:
            log.warning("per-sample rng fast path disabled: it disagrees with feedstock.rng.sample_rng")

    def _same_as_reference(self, epoch: int, index: int) -> bool:
        ours = self._rekey(epoch, index).random(4)
        return bool(np.array_equal(ours, rng_module.sample_rng(self.seed, epoch, index).random(4)))

    def __call__(self, epoch: int, index: int) -> np.random.Generator:
        if self.fast:
            return self._rekey(epoch, index)
        return rng_module.sample_rng(self.seed, epoch, index)

    def _rekey(self, epoch: int, index: int) -> np.random.Generator:
        key = (self.seed << 64) | (int(epoch) << self._shift) | int(index)
        state = self._state
        state["state"]["key"] = np.array([key & 0xFFFFFFFFFFFFFFFF, key >> 64], dtype=np.uint64)
        state["state"]["counter"] = self._zeros
        state["buffer_pos"], state["has_uint32"], state["uinteger"] = 4, 0, 0
        self._bitgen.state = state
        return self._gen


@dataclass
class FillPlan:
    """What a worker needs, built in the main process; calling it in a worker attaches the slots."""

    source: Any
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


def record_key(source: Any, index: int) -> str:
    """``source.key(i)``, or the index when the source cannot name it."""
    try:
        return str(source.key(index))
    except Exception:  # a message about the record must not fail on its name
        return f"index {index}"


def _fast_path_ok(source: Any, compose: Compose) -> bool:
    return callable(getattr(source, "get_batch", None)) and all(
        callable(getattr(t, "apply_batch", None)) for t in compose.transforms
    )


class Filler:
    """The handler run per task in a worker (or in-process when ``workers=0``)."""

    def __init__(self, plan: FillPlan, ring: SlotRing, wid: int, source: Any):
        self.plan, self.ring, self.wid, self.source = plan, ring, wid, source
        self.sampler, self.compose = plan.sampler, plan.compose
        self.rngs = SampleRngs(plan.sampler.seed)
        self.fast = _fast_path_ok(source, plan.compose)
        # no transforms and a source that gathers into given arrays: rows go straight into the slot
        self.into = self.fast and not plan.compose.transforms and getattr(source, "gathers_into", False)
        self._rows: Dict[Tuple[int, int], Dict[str, np.ndarray]] = {}

    def __call__(self, chunks: Tuple[Task, ...]) -> Tuple[FillResult, ...]:
        """One task: rows of one batch, or several whole (cheap) batches."""
        return tuple(self.fill(chunk) for chunk in chunks)

    def fill(self, chunk: Task) -> FillResult:
        epoch, k, slot, lo, hi, gen = chunk
        ctl = self.ring.ctl
        if ctl is not None and ctl[-1] != gen:
            return SKIPPED  # discarded by the main process while queued here
        order = self.sampler.shard(epoch)
        base = k * self.sampler.batch_size
        times = [0.0, 0.0]
        decoded = getattr(self.source, "decode_s", 0.0)
        bad: List[BadRecord] = []
        if not (self.fast and self._fill_fast(order[base + lo : base + hi], slot, lo, hi, times)):
            for j in range(lo, hi):
                self._fill_row(epoch, order, base + j, slot, j, times, bad)
        self._progress(-1)
        return times[0], getattr(self.source, "decode_s", 0.0) - decoded, times[1], tuple(bad)

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
        """Whole chunk at once: ``get_batch`` then each transform's ``apply_batch``; False -> per row."""
        self._progress(int(indices[0]))
        try:
            t0 = time.perf_counter()
            if self.into:
                try:
                    self.source.get_batch(indices, out={n: v[lo:hi] for n, v in self.ring.slots[slot].items()})
                except Exception:
                    self.into = False  # from now on get_batch + copy (this chunk: the per-row path)
                    raise
                times[0] += time.perf_counter() - t0
                return True
            fields = self.source.get_batch(indices)
            t1 = time.perf_counter()
            for t in self.compose.transforms:
                if fields is NotImplemented:
                    break
                fields = t.apply_batch(fields)
            if fields is NotImplemented:  # encoded records, a random transform: rows from now on
                self.fast = False
                return False
            for name, view in self.ring.slots[slot].items():
                value = np.asarray(fields[name])
                if value.shape != view[lo:hi].shape:
                    return False  # the per-row path names the offending record
                np.copyto(view[lo:hi], value, casting="unsafe")
        except Exception as exc:  # the per-row path re-reads and reports with record keys
            log.debug("batch fast path failed (%s); filling row by row", exc)
            return False
        times[0] += t1 - t0
        times[1] += time.perf_counter() - t1
        return True


def batch_spec(source: Any, compose: Any, seed: int) -> Spec:
    """Per-sample shapes and dtypes of a batch: declared by the transforms, or fixed by probing record 0
    (rng of (seed, 0, 0)) where a dim is known only per record."""
    source_spec = getattr(source, "spec", None)
    try:
        declared: Optional[Spec] = compose.output_spec(source_spec()) if source_spec else None
    except NotImplementedError:
        declared = None
    if declared is not None and all(s.fixed for s in declared.values()):
        return dict(declared)
    try:
        probe = compose(source[0], rng_module.sample_rng(seed, 0, 0))
    except Exception as exc:
        raise ValueError(f"could not fix the batch shapes by probing record {record_key(source, 0)}: {exc}") from exc
    probed = spec_of(probe)
    return probed if declared is None else merge_unknown(declared, probed)
