"""Feeding a device without stalls: pinned slot registration and async host-to-device copies.

On cupy, each slot of the loader's shared-memory ring is registered once as
pinned memory (``cudaHostRegister``); batch k+1 is copied on a side stream while
step k computes, into one of two device buffers; the slot is handed back to the
loader only after its copy event completes; uint8 batches are converted
(log1p, mean, scale) on the device, so 4x fewer bytes cross PCIe. On numpy the
same interface hands the batch through (converted into float32) with the same
timing report.

What this needs from a loader is small: ``slot_arrays()`` (the numpy arrays of
every slot, to register once before iterating) and the rule that a yielded
batch stays valid until the next one is requested. The feeder requests batch
k+2 only after batch k+1's copy event has completed.
"""
from __future__ import annotations

import contextlib
import logging
import mmap
import time
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Generator,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

import numpy as np
from numpy.typing import DTypeLike

from .backend import Array, Backend, get_backend

if TYPE_CHECKING:
    import cupy

log = logging.getLogger(__name__)

Batch = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class FeedStats:
    """Timing of one pass (epoch) through the feeder, as the trainer saw it."""

    epoch: int
    steps: int
    samples: int
    compute_s: float  # trainer time between receiving a batch and asking for the next
    wait_s: float  # time the trainer waited for data, after the first batch
    startup_s: float  # wait for the first batch (loader start, first copy)

    @property
    def step_time_s(self) -> float:
        return (self.compute_s + self.wait_s) / self.steps if self.steps else 0.0

    @property
    def wait_fraction(self) -> float:
        total = self.compute_s + self.wait_s
        return self.wait_s / total if total > 0 else 0.0

    @property
    def samples_per_s(self) -> float:
        total = self.compute_s + self.wait_s
        return self.samples / total if total > 0 else 0.0

    def line(self) -> str:
        return (f"epoch {self.epoch}: {self.steps} steps, step {self.step_time_s * 1e3:.2f} ms, "
                f"data wait {self.wait_s:.3f} s ({self.wait_fraction:.1%}), "
                f"{self.samples_per_s:.0f} samples/s, first batch {self.startup_s:.3f} s")


def page_ranges(arrays: Iterable[np.ndarray]) -> List[Tuple[int, int]]:
    """Merged page-aligned (address, size) ranges covering ``arrays``' memory.

    Fields of one slot share pages; registering overlapping ranges fails, so they
    are merged first. Slot memory is mmap'ed, hence whole pages belong to it.
    """
    page = mmap.PAGESIZE
    spans = sorted((a.ctypes.data // page * page, -(-(a.ctypes.data + a.nbytes) // page) * page)
                   for a in arrays if a.nbytes)
    merged: List[List[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e - s) for s, e in merged]


def _after_first(batches: Iterable[Batch], hook: Callable[[], object]) -> Iterator[Batch]:
    """``batches`` with ``hook()`` run once the first batch exists; closes the source when closed."""
    it = iter(batches)
    try:
        first = next(it, None)
        if first is None:
            return
        hook()
        yield first
        yield from it
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


class _Timer:
    """Splits wall time between the trainer's compute and its waits for data."""

    def __init__(self) -> None:
        self.compute = self.wait = self.startup = self.paused = 0.0
        self.steps = self.samples = 0
        self.handed: Optional[float] = None

    def resumed(self) -> float:
        """The trainer asks for data: close its compute interval (once)."""
        now = time.perf_counter()
        if self.handed is not None:
            self.compute += now - self.handed - self.paused
            self.handed = None
        self.paused = 0.0
        return now

    def hand(self, since: float, rows: int) -> None:
        """A batch is handed over; the trainer waited since ``since``."""
        now = time.perf_counter()
        if self.steps == 0:
            self.startup += now - since
        else:
            self.wait += now - since
        self.handed = now
        self.steps += 1
        self.samples += rows


class DeviceFeeder:
    """Turns host batches into device batches ``{"data": float32, "label": int64, ...}`` with timing."""

    def __init__(self, backend: Optional[Backend] = None, *, scale: float = 1.0, mean: float = 0.0,
                 log1p: bool = False, dtype: DTypeLike = np.float32, data_field: str = "data") -> None:
        self.backend = backend or get_backend()
        self.scale, self.mean, self.log1p = float(scale), float(mean), bool(log1p)
        self.dtype: np.dtype[Any] = np.dtype(dtype)
        self.data_field = data_field
        self.stats: List[FeedStats] = []
        self._registered: Dict[int, int] = {}
        self._device: Dict[Tuple[int, str, Tuple[int, ...], str], "cupy.ndarray"] = {}
        self._timer: Optional[_Timer] = None
        self._stream = self.backend.xp.cuda.Stream(non_blocking=True) if self.backend.gpu else None

    # -- pinned registration -------------------------------------------------
    def register(self, slots: Sequence[Mapping[str, np.ndarray]]) -> int:
        """Register every slot's memory as pinned once (cupy); returns the bytes newly registered."""
        if not self.backend.gpu:
            return 0
        runtime = self.backend.xp.cuda.runtime
        added = 0
        for ptr, size in page_ranges(a for slot in slots for a in slot.values()):
            if ptr in self._registered:
                continue
            runtime.hostRegister(ptr, size, 0)  # cudaHostRegisterDefault
            self._registered[ptr] = size
            added += size
        log.debug("registered %d bytes of slot memory as pinned", added)
        return added

    def close(self) -> None:
        """Unregister pinned memory; call before the loader unmaps its slots."""
        if not self._registered:
            return
        self.backend.synchronize()
        runtime = self.backend.xp.cuda.runtime
        for ptr in list(self._registered):
            del self._registered[ptr]
            try:
                runtime.hostUnregister(ptr)
            except runtime.CUDARuntimeError as e:  # the loader already unmapped it (error path)
                log.warning("could not unregister pinned slot memory at 0x%x: %s", ptr, e)

    def __enter__(self) -> "DeviceFeeder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time inside (a test pass, a snapshot) is not charged to the current training step."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._timer is not None:
                self._timer.paused += time.perf_counter() - start

    # -- feeding ---------------------------------------------------------------
    def feed(self, batches: Iterable[Batch], *, epoch: int = 0,
             slots: Optional[Callable[[], Sequence[Mapping[str, np.ndarray]]]] = None,
             record: bool = True) -> Generator[Dict[str, Array], None, None]:
        """Device batches from host batches; appends this pass's FeedStats (when ``record``) at its end.

        ``slots`` (e.g. ``loader.slot_arrays``) is called once the first batch has
        arrived (a Loader creates its slots when iteration starts) and its arrays
        are registered as pinned memory before the first copy.
        """
        timer = _Timer()
        if record:
            self._timer = timer
        if slots is not None and self.backend.gpu:
            batches = _after_first(batches, lambda: self.register(slots()))
        try:
            inner = self._gpu(batches, timer) if self.backend.gpu else self._host(batches, timer)
            yield from inner
        finally:
            if record:
                timer.resumed()
                self.stats.append(FeedStats(epoch, timer.steps, timer.samples, timer.compute,
                                            timer.wait, timer.startup))
                self._timer = None

    def _convert(self, raw: Array, out: Optional[Array] = None) -> Array:
        """(f(x) - mean) * scale into float, f = log1p or identity; Caffe's order of operations."""
        xp = self.backend.xp
        if out is None:
            out = raw.astype(self.dtype)
        else:
            xp.copyto(out, raw, casting="unsafe")
        if self.log1p:
            xp.log1p(out, out=out)
        if self.mean:
            out -= self.dtype.type(self.mean)
        if self.scale != 1.0:
            out *= self.dtype.type(self.scale)
        return out

    def _host(self, batches: Iterable[Batch], timer: _Timer) -> Iterator[Dict[str, Array]]:
        buffers: Dict[Tuple[int, ...], np.ndarray] = {}
        it = iter(batches)
        while True:
            since = timer.resumed()
            try:
                host = next(it)
            except StopIteration:
                return
            out = {k: np.array(v, copy=True) for k, v in host.items() if k != self.data_field}
            raw = host[self.data_field]
            buf = buffers.get(raw.shape)
            if buf is None:
                buf = buffers[raw.shape] = np.empty(raw.shape, self.dtype)
            out[self.data_field] = self._convert(raw, buf)
            if "label" in out:
                out["label"] = out["label"].astype(np.int64, copy=False)
            timer.hand(since, len(raw))
            yield out

    def _gpu(self, batches: Iterable[Batch], timer: _Timer) -> Iterator[Dict[str, Array]]:
        cp = self.backend.xp
        it = iter(batches)
        parity = 0
        since = timer.resumed()
        pending = self._issue(next(it, None), parity)
        while pending is not None:
            fields, copied = pending
            # The slot of this batch may be reused by the loader only after its copy completed.
            copied.synchronize()
            parity ^= 1
            pending = self._issue(next(it, None), parity)
            cp.cuda.get_current_stream().wait_event(copied)
            out = dict(fields)
            out[self.data_field] = self._convert(fields[self.data_field])
            if "label" in out:
                out["label"] = out["label"].astype(cp.int64, copy=False)
            timer.hand(since, len(out[self.data_field]))
            yield out
            since = timer.resumed()

    def _issue(self, host: Optional[Batch], parity: int) -> Optional[Tuple[Dict[str, Array], "cupy.cuda.Event"]]:
        """Start the async copy of ``host`` into device buffer ``parity``; (device fields, event)."""
        if host is None:
            return None
        cp = self.backend.xp
        # The compute stream must be done with this buffer (used two steps ago) before we overwrite it.
        self._stream.wait_event(cp.cuda.get_current_stream().record())  # type: ignore[union-attr]
        fields = {}
        for name, arr in host.items():
            arr = np.ascontiguousarray(arr)
            dev = self._device_buffer(parity, name, arr)
            dev.set(arr, stream=self._stream)
            fields[name] = dev
        done = cp.cuda.Event(disable_timing=True)
        done.record(self._stream)
        return fields, done

    def _device_buffer(self, parity: int, name: str, arr: np.ndarray) -> "cupy.ndarray":
        key = (parity, name, arr.shape, arr.dtype.str)
        if key not in self._device:  # two buffers per field (and per shape: a short last batch)
            self._device[key] = self.backend.xp.empty(arr.shape, dtype=arr.dtype)
        return self._device[key]
