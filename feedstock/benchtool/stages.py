"""One-core stage rates: the source alone, its decoding alone, the transforms alone (one process, timed).

The whole step takes about ``seconds`` on any source (each of its three timings gets a
third, and stops at that much wall time even where the timed calls are a small part of
it, at least ``MIN_ITEMS`` records) over records in a shuffled order, the way a
shuffling Loader reads them. A CSV table is parsed when it is opened: its rows say so
("parse at load", timed when the stream was opened, then "in-memory read"). Where the Loader would
take its batch fast path (a BatchReadable source's ``read_batch`` and every
transform's ``apply_batch``), the stages time those batched calls too, so their
per-record costs add up to what a worker does. ``cpu_s`` counts CPU time plus the
time spent runnable but waiting for a core (``/proc/self/schedstat``: other
processes on a shared machine), so ``cpu_s`` below ``wall_s`` means waiting on storage.
"""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from ..casting import write_fields
from ..loaders import CaffeLmdb, Pairs
from ..loaders.decode import color_mode, decode_image, read_bytes
from ..loaders.images import LabeledImages
from ..pipeline.fill import apply_batch, fast_path_ok, record_key
from ..protocols import DecodeTimed, Source
from ..rng import sample_rng
from ..spec import Spec
from ..transforms.base import Compose

T = TypeVar("T")
MIN_ITEMS = 2
POOL_BYTES = 64 << 20  # decoded samples kept to time the transforms on their own
POOL_ITEMS = 64


@dataclass(frozen=True)
class StageRate:
    """``records`` went through one stage in ``wall_s`` seconds (``cpu_s`` of them on the CPU)."""

    name: str
    records: int
    wall_s: float
    cpu_s: float
    nbytes: int = 0  # bytes read (stored bytes for LMDB values and files; array bytes otherwise)

    @property
    def per_record_s(self) -> float:
        return self.wall_s / self.records if self.records else float("nan")

    @property
    def rate(self) -> float:
        return self.records / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / 1e6 / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def cpu_fraction(self) -> float:
        return min(self.cpu_s / self.wall_s, 1.0) if self.wall_s > 0 else 1.0

    def scaled(self, name: str, wall_s: float, cpu_s: float) -> "StageRate":
        return StageRate(name, self.records, max(wall_s, 0.0), max(cpu_s, 0.0), self.nbytes)

    def to_dict(self) -> Dict[str, float]:
        return {"records": self.records, "wall_s": self.wall_s, "cpu_s": self.cpu_s, "bytes": self.nbytes,
                "records_per_s": self.rate, "mb_per_s": self.mb_per_s, "us_per_record": self.per_record_s * 1e6,
                "cpu_fraction": self.cpu_fraction}


@dataclass(frozen=True)
class Stages:
    """``source`` includes decoding; ``read`` is the source less decoding; ``decode`` is None for
    sources that do not decode (CSV, HDF5, raw Datums)."""

    source: StageRate
    read: StageRate
    decode: Optional[StageRate]
    transforms: StageRate
    load: Optional[StageRate] = None  # a CSV parsed when opened: "parse at load" (None: nothing timed)
    in_memory: bool = False  # reads come from a table held in memory (a CSV after its parse)

    def per_record(self) -> Dict[str, float]:
        """Seconds per record of read, decode and transforms (what one core pays per sample)."""
        out = {"read": self.read.per_record_s, "transforms": self.transforms.per_record_s}
        out["decode"] = self.decode.per_record_s if self.decode is not None else 0.0
        return out

    def cpu_fraction(self, stage: str) -> float:
        rate = {"read": self.read, "decode": self.decode, "transforms": self.transforms}[stage]
        return rate.cpu_fraction if rate is not None else 1.0


class _Clock:
    """Accumulates wall seconds around timed blocks until a budget is spent, or until that much wall time
    has passed in all (the untimed work between the blocks counts towards the step's bound); the CPU
    share comes from the whole loop (per-call scheduler statistics are too coarse for microsecond calls)."""

    def __init__(self, seconds: float):
        self.seconds, self.wall, self.items, self.nbytes = seconds, 0.0, 0, 0
        self._w0, self._c0 = time.perf_counter(), on_cpu_s()

    def running(self) -> bool:
        if self.items < MIN_ITEMS:
            return True
        return self.wall < self.seconds and time.perf_counter() - self._w0 < self.seconds

    def time(self, fn: Callable[[], T], items: int = 1) -> T:
        w0 = time.perf_counter()
        out = fn()
        self.wall += time.perf_counter() - w0
        self.items += items
        return out

    def rate(self, name: str) -> StageRate:
        share = (on_cpu_s() - self._c0) / max(time.perf_counter() - self._w0, 1e-9)
        return StageRate(name, self.items, self.wall, self.wall * min(share, 1.0), self.nbytes)


def on_cpu_s() -> float:
    """This thread's CPU seconds plus the seconds it waited runnable for a core (other processes on a
    shared machine; ``/proc/thread-self/schedstat``): what it would have run given a free core."""
    waited = 0.0
    try:
        with open("/proc/thread-self/schedstat") as f:
            waited = int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    return time.thread_time() + waited


def shuffled(n: int, seed: int) -> Iterator[int]:
    """Record indices in a fresh permutation per pass, endlessly (the Loader's shuffled reads)."""
    rng = np.random.default_rng(seed)
    while True:
        yield from rng.permutation(n).tolist()


def stored_bytes(source: Source, i: int) -> int:
    """Bytes a record occupies where it is stored (files, LMDB value); else its arrays' bytes."""
    if isinstance(source, CaffeLmdb):
        from ..loaders.caffe_lmdb import shared_env

        value = shared_env(source.path).txn().get(source.raw_key(i))
        return len(value) if value is not None else 0
    if isinstance(source, LabeledImages):
        return os.path.getsize(source.path(i))
    if isinstance(source, Pairs):
        return sum(os.path.getsize(p) for p in source.paths(i) if p)
    return sum(np.asarray(v).nbytes for v in source[i].values())


def batched(source: Any, compose: Compose, batch_size: int) -> bool:
    """True when the Loader would fill this pipeline's batches with vectorised calls."""
    if not fast_path_ok(source, compose):
        return False
    return apply_batch(compose, source.read_batch(np.arange(min(batch_size, len(source))))) is not NotImplemented


def time_source(source: Any, seconds: float, seed: int, batch: int = 0) -> Tuple[StageRate, Optional[float]]:
    """Records/s and MB/s of ``source[i]`` (or ``read_batch`` of ``batch`` indices) in shuffled order,
    and the decode seconds of it when the source keeps its own decode clock (CaffeLmdb's ``decode_s``)."""
    clock, order = _Clock(seconds), shuffled(len(source), seed)
    decoded0 = source.decode_s if isinstance(source, DecodeTimed) else None
    while clock.running():
        if batch:
            idx = np.fromiter(order, np.int64, min(batch, len(source)))
            clock.time(lambda: source.read_batch(idx), len(idx))  # noqa: B023
            clock.nbytes += stored_bytes(source, int(idx[0])) * len(idx)
        else:
            i = next(order)
            clock.time(lambda: source[i])  # noqa: B023
            clock.nbytes += stored_bytes(source, i)
    decode_s = source.decode_s - decoded0 if decoded0 is not None else None
    return clock.rate("source"), decode_s


def time_file_reads(source: LabeledImages, seconds: float, seed: int) -> Tuple[StageRate, StageRate]:
    """Image files read alone (their bytes) and decoded alone (from bytes already read), in turn."""
    reads, decodes, order = _Clock(seconds), _Clock(seconds), shuffled(len(source), seed)
    mode = color_mode(source.color)
    while reads.running() or decodes.running():
        path = source.path(next(order))
        data = reads.time(lambda: read_bytes(path))  # noqa: B023
        reads.nbytes += len(data)
        decodes.time(lambda: decode_image(data, mode=mode, rgb=source.rgb, key=path))  # noqa: B023
    return reads.rate("read"), decodes.rate("decode")


def split_decode(source: Source, total: StageRate, decode_s: Optional[float], seconds: float,
                 seed: int) -> Tuple[StageRate, Optional[StageRate]]:
    """(read, decode or None): the source's total less its own decode clock, or both timed apart."""
    if isinstance(source, LabeledImages):
        return time_file_reads(source, seconds, seed + 1)
    if decode_s is None or decode_s <= 0:
        return total.scaled("read", total.wall_s, total.cpu_s), None
    decode = total.scaled("decode", decode_s, min(decode_s, total.cpu_s))
    read = total.scaled("read", total.wall_s - decode.wall_s, total.cpu_s - decode.cpu_s)
    return read, decode


def sample_pool(source: Source, seed: int, limit: int = POOL_ITEMS, seconds: float = float("inf")) -> List[Dict[str, np.ndarray]]:
    """A few decoded records (at most ``POOL_BYTES``, within about ``seconds`` after the first
    ``MIN_ITEMS``) to run the transforms on, away from the source."""
    pool, size, deadline = [], 0, time.perf_counter() + seconds
    for _, i in zip(range(min(limit, len(source))), shuffled(len(source), seed)):
        sample = source[i]
        pool.append(sample)
        size += sum(np.asarray(v).nbytes for v in sample.values())
        if size >= POOL_BYTES or (len(pool) >= MIN_ITEMS and time.perf_counter() >= deadline):
            break
    return pool


def time_transforms(source: Any, compose: Compose, spec: Dict[str, Any], seconds: float, seed: int,
                    batch: int = 0) -> StageRate:
    """The transforms alone on records read beforehand, writing into one preallocated batch like a worker."""
    clock = _Clock(seconds)
    rows_n = max(batch, 1)
    out = {k: np.zeros((rows_n, *s.shape), s.dtype) for k, s in spec.items()}  # zeroed: pre-faulted
    if batch:
        idx = np.arange(min(batch, len(source)))
        fields = source.read_batch(idx)
        slot = {name: view[: len(idx)] for name, view in out.items()}

        def run_batch() -> None:
            write_fields(apply_batch(compose, fields), slot)

        while clock.running():
            clock.time(run_batch, len(idx))
        return clock.rate("transforms")
    t0 = time.perf_counter()
    pool = sample_pool(source, seed, seconds=seconds / 2)  # reading the pool counts towards the bound
    clock = _Clock(max(seconds - (time.perf_counter() - t0), seconds / 4))
    rows = [{k: v[0, ...] for k, v in out.items()}]
    j = 0
    while clock.running():
        sample, rng = pool[j % len(pool)], sample_rng(seed, 0, j)
        try:
            clock.time(lambda: compose.into(sample, rng, rows[0]))  # noqa: B023
        except Exception as exc:  # name the record, as a worker does (the pool is sample_pool's order)
            index = next(itertools.islice(shuffled(len(source), seed), j % len(pool), None))
            exc.record_key = record_key(source, index)  # type: ignore[attr-defined]
            raise
        j += 1
    return clock.rate("transforms")


def measure_stages(source: Any, compose: Compose, spec: Spec, *, seconds: float, seed: int = 0,
                   batch_size: int = 64, load_s: Optional[float] = None) -> Stages:
    """Source (+ decode split) and transforms alone, in this process, in about ``seconds`` in all;
    ``load_s``: seconds the source took to open (a CSV's parse), reported as its own row."""
    from ..loaders import CsvTable
    from ..loaders.decode import limit_opencv_threads

    if len(source) == 0:
        raise ValueError("the source is empty: nothing to measure")
    limit_opencv_threads()  # one core's rate, as in a worker
    part = seconds / 3  # source, its read/decode split, transforms
    batch = batch_size if batched(source, compose, batch_size) else 0
    total, decode_s = time_source(source, part, seed, batch)
    read, decode = split_decode(source, total, decode_s, part, seed)
    transforms = time_transforms(source, compose, spec, part, seed, batch)
    table = isinstance(source, CsvTable)
    load = None
    if table and load_s is not None:
        load = StageRate("parse at load", len(source), load_s, load_s, _file_bytes(source.path))
    return Stages(total, read, decode, transforms, load, table)


def _file_bytes(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def stage_names(stages: Stages) -> Sequence[str]:
    return ("read", "decode", "transforms") if stages.decode is not None else ("read", "transforms")
