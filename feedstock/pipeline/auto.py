"""``workers="auto"`` and ``feedstock bench``'s recommendation: one measurement, one rule.

**Measurement** (:func:`measure_counts`): the Loader itself, made at each candidate worker
count (0 = in-process), in ``repeats`` interleaved rounds (the order reversed every other
round, so a machine that slows down or speeds up hits every count alike). Each window opens a
fresh Loader, skips the start-up and the first batch of each worker (they were made side by
side, not at the steady rate), then takes batches as fast as the consumer can for about
``window_s`` (at least ``min_batches``): one samples/s figure per window.

**Rule** (:func:`recommend`, a pure function of those figures): a count's spread is the median
and range of its windows. Among the eligible counts, the best is the one with the highest
median; the recommendation is the fewest workers (1 or more) whose median lies inside the
best's range, i.e. within the measured noise of the best; 0 (in-process) only when no worker
count's median reaches the best's range (a trainer reading in-process stops while its batches
are made, so workers win a tie). A count is eligible when its workers plus the consumer's own
threads fit in the usable cores (one worker always is) and its workers and slots fit in memory.

``feedstock bench`` measures with :func:`measure_counts` (longer windows) and prints both its
recommendation and ``auto``'s choice from :func:`recommend` on the same figures, so one bench
output cannot show them disagreeing; ``Loader(workers="auto")`` runs :func:`measure_counts` on
about a second of windows, then :func:`recommend`.
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Sized, Tuple, Union

from ..protocols import Source, Transform
from . import machine

log = logging.getLogger(__name__)

MEMORY_SHARE = 0.8  # of MemAvailable that workers and slots may take
SHM_SHARE = 0.9  # of /dev/shm free that the slots may take
REPEATS = 3  # windows per count: the spread needs at least three for a median and a range
AUTO_BUDGET_S = 1.0  # steady-state seconds the auto probe spends over all its windows
MIN_WINDOW_S = 0.02
CONSUMER_THREADS = 1  # the thread that takes the batches (a trainer's own compute threads add to it)

MakeLoader = Callable[[Any], Any]  # worker count -> a fresh Loader (a context manager)
Tick = Callable[[], None]


# ----- the measurement ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Steady:
    """Batches taken after the warm-up (the steady state), and what they cost."""

    first_s: float  # from ``start`` to the first batch (start-up)
    batches: int
    samples: int
    elapsed_s: float  # from the end of the warm-up to the last batch
    cpu_s: float  # this process's CPU seconds over the same span


def steady_batches(loader: Iterable[Mapping[str, Sized]], seconds: float, *, min_batches: int = 1, warmup: int = 1,
                   tick: Optional[Tick] = None, start: Optional[float] = None) -> Steady:
    """Skip ``warmup`` batches, then take batches for about ``seconds`` (epochs repeat as needed), at least
    ``min_batches`` of them; ValueError when a whole pass yields nothing."""
    start = time.perf_counter() if start is None else start
    first: Optional[float] = None
    seen, t0, c0, batches, samples, deadline = 0, 0.0, 0.0, 0, 0, float("inf")
    while batches < min_batches or time.perf_counter() < deadline:
        empty = True
        for batch in loader:
            empty = False
            seen += 1
            if first is None:
                first = time.perf_counter() - start
            if seen == warmup:  # the steady state starts here
                t0, c0, deadline = time.perf_counter(), time.process_time(), time.perf_counter() + seconds
            elif seen > warmup:
                batches += 1
                samples += len(next(iter(batch.values())))
            if tick is not None:
                tick()
            if batches >= min_batches and time.perf_counter() >= deadline:
                break
        if empty:
            raise ValueError("the loader yields no batches (batch size larger than the source with drop_last?)")
    return Steady(first or 0.0, batches, samples, time.perf_counter() - t0, time.process_time() - c0)


@dataclass(frozen=True)
class Window:
    """One Loader at one worker count, measured once."""

    workers: int
    batches: int
    samples: int
    elapsed_s: float
    first_batch_s: float
    main_cpu_s: float
    wait_fraction: float = 0.0  # of the consumer's time spent waiting for a batch
    worker_busy: float = 1.0  # worker seconds busy (read + transforms) per worker-second
    worker_pss: Tuple[int, ...] = ()  # bytes per worker, at the end
    slot_bytes: int = 0

    @property
    def rate(self) -> float:
        return self.samples / self.elapsed_s if self.elapsed_s > 0 else 0.0


def measure_window(make_loader: MakeLoader, workers: int, *, seconds: float, min_batches: int = 2,
                   tick: Optional[Tick] = None) -> Window:
    """A fresh Loader at ``workers``: its steady samples/s over about ``seconds``, and its memory."""
    start = time.perf_counter()
    with make_loader(workers) as loader:
        if len(loader) == 0:
            raise ValueError("the Loader yields no batches (batch size larger than the source with drop_last?)")
        steady = steady_batches(loader, seconds, min_batches=min_batches, warmup=max(workers, 1), tick=tick,
                                start=start)
        stats = loader.stats()
        pss = tuple(machine.pss_bytes(pid) or 0 for pid in loader.worker_pids())
        slots = sum(a.nbytes for slot in loader.slot_arrays() for a in slot.values())
    busy = (stats["read_s"] + stats["transform_s"]) / max(stats["elapsed_s"] * max(workers, 1), 1e-9)
    return Window(workers, steady.batches, steady.samples, steady.elapsed_s, steady.first_s, steady.cpu_s,
                  stats["wait_fraction"], min(busy, 1.0) if workers else 1.0, pss, slots)


def measure_counts(make_loader: MakeLoader, counts: Sequence[int], *, window_s: float, repeats: int = REPEATS,
                   min_batches: int = 2, tick: Optional[Tick] = None,
                   on_window: Optional[Callable[[int, int], None]] = None) -> Dict[int, List[Window]]:
    """``repeats`` windows per count, rounds interleaved (see the module doc); ``on_window(round, n)``
    is called before each window (a progress bar)."""
    if repeats < 1:
        raise ValueError(f"{repeats=} must be >= 1")
    order = sorted(set(counts))
    out: Dict[int, List[Window]] = {n: [] for n in order}
    for r in range(repeats):
        for n in (order if r % 2 == 0 else order[::-1]):
            if on_window is not None:
                on_window(r, n)
            out[n].append(measure_window(make_loader, n, seconds=window_s, min_batches=min_batches, tick=tick))
    return out


def default_counts(cores: int) -> List[int]:
    """1, 2, then doubling up to ``cores`` (and ``cores`` itself when it is no power of two)."""
    counts = [1]
    n = 2
    while n <= cores:
        counts.append(n)
        n *= 2
    if cores > counts[-1]:
        counts.append(cores)
    return counts


# ----- the rule -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spread:
    """Median and range of one count's samples/s over its windows."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, rates: Sequence[float]) -> "Spread":
        if not rates:
            raise ValueError("a count with no measured windows")
        return cls(float(statistics.median(rates)), float(min(rates)), float(max(rates)))

    def text(self) -> str:
        return f"{self.median:,.0f} ({self.low:,.0f}-{self.high:,.0f})"


@dataclass(frozen=True)
class AutoChoice:
    """The count chosen, why, and the spreads behind it (``stats()`` of the Loader reports it)."""

    workers: int
    reason: str
    cores: int
    best: int  # the eligible count with the highest median
    spreads: Dict[int, Spread] = field(default_factory=dict)
    worker_limit: int = 1  # most workers the cores (less the consumer's threads) and memory allow
    probe_s: float = 0.0

    def stats(self) -> Dict[str, Any]:
        return {"workers_auto": self.workers, "workers_auto_reason": self.reason,
                "workers_auto_cores": self.cores, "workers_auto_best": self.best,
                "workers_auto_limit": self.worker_limit, "workers_auto_probe_s": self.probe_s}


def worker_limit(cores: int, consumer_threads: int = CONSUMER_THREADS, memory_cap: Optional[int] = None) -> int:
    """Workers that leave the consumer's threads their cores (at least one), within ``memory_cap``."""
    if cores < 1:
        raise ValueError(f"{cores=} must be >= 1")
    if consumer_threads < 0:
        raise ValueError(f"{consumer_threads=} must be >= 0")
    limit = max(1, cores - consumer_threads)
    return limit if memory_cap is None else min(limit, memory_cap)


def recommend(rates: Mapping[int, Sequence[float]], *, cores: int, consumer_threads: int = CONSUMER_THREADS,
              memory_cap: Optional[int] = None) -> AutoChoice:
    """The rule of the module doc on samples/s per window by worker count (tests build these by hand)."""
    if not rates:
        raise ValueError("no measured worker counts to choose from")
    limit = worker_limit(cores, consumer_threads, memory_cap)
    spreads = {n: Spread.of(rates[n]) for n in sorted(rates)}
    eligible = {n: s for n, s in spreads.items() if n <= limit}
    if not eligible:
        eligible = {min(spreads): spreads[min(spreads)]}
    best = max(eligible, key=lambda n: (eligible[n].median, -n))
    floor = eligible[best].low
    within = [n for n, s in eligible.items() if n > 0 and s.median >= floor]
    workers = min(within) if within else 0
    why = _reason(workers, best, eligible, floor)
    left_out = [n for n in spreads if n not in eligible]
    if left_out:
        by_cores = max(1, cores - consumer_threads)
        why += (f"; not eligible: {', '.join(map(str, left_out))} workers (at most {limit}: {cores} usable cores "
                f"less {consumer_threads} consumer thread{'s' if consumer_threads != 1 else ''}"
                + (f"; memory allows {memory_cap}" if memory_cap is not None and memory_cap < by_cores else "")
                + ")")
    return AutoChoice(workers, why, cores, best, spreads, limit)


def _reason(workers: int, best: int, spreads: Mapping[int, Spread], floor: float) -> str:
    name = lambda n: "in-process" if n == 0 else f"{n} worker{'s' if n > 1 else ''}"  # noqa: E731
    rates = "; ".join(f"{name(n)} {s.text()}" for n, s in spreads.items())
    if workers == 0:
        why = f"in-process: no worker count's median reaches its range (low {floor:,.0f})"
    elif workers == best:
        why = f"{name(workers)}: the best median"
    else:
        why = (f"{name(workers)}: the fewest workers whose median is within the best's range "
               f"({name(best)}, low {floor:,.0f})")
    return f"{why} [samples/s median (range): {rates}]"


def memory_cap(worker_bytes: int, slot_bytes: int, mem_avail: Optional[int], shm_free: Optional[int]) -> Tuple[int, str]:
    """Most workers the memory allows (a large number when unlimited) and the reason when it binds."""
    if shm_free is not None and slot_bytes > SHM_SHARE * shm_free:
        return 0, f"the slots need {slot_bytes / 2**20:.0f} MiB but /dev/shm has {shm_free / 2**20:.0f} MiB free"
    if mem_avail is None or worker_bytes <= 0:
        return 1 << 30, ""
    room = MEMORY_SHARE * mem_avail - slot_bytes
    cap = max(0, int(room // worker_bytes))
    return cap, (f"{worker_bytes / 2**20:.0f} MiB per worker + {slot_bytes / 2**20:.0f} MiB of slots "
                 f"must fit in {MEMORY_SHARE:.0%} of {mem_avail / 2**20:.0f} MiB available")


def windows_memory_cap(windows: Mapping[int, Sequence[Window]]) -> Optional[int]:
    """The memory cap from the measured workers' PSS and slots (None when no worker ran)."""
    pss = [sum(w.worker_pss) / len(w.worker_pss) for ws in windows.values() for w in ws if w.worker_pss]
    slots = max((w.slot_bytes for ws in windows.values() for w in ws if w.workers > 0), default=0)
    if not pss:
        return None
    cap, _ = memory_cap(int(max(pss)), slots, machine.mem_available(), machine.shm_free())
    return cap


def choose_workers(source: Source, transforms: Union[Transform, Sequence[Transform], None], *,
                   loader_class: Callable[..., Any], batch_size: int, seed: int = 0,
                   prefetch: int = 4, start_method: str = "auto", budget_s: float = AUTO_BUDGET_S,
                   consumer_threads: int = CONSUMER_THREADS, repeats: int = REPEATS) -> AutoChoice:
    """The worker count for a Loader over ``source``/``transforms``; ``loader_class`` is the Loader (passed
    in: the Loader calls this while it is being built). See the module doc."""
    cores = machine.usable_cores()
    start = time.perf_counter()
    counts = [0] + default_counts(worker_limit(cores, consumer_threads))

    def make(n: int) -> Any:
        return loader_class(source, transforms, workers=n, batch_size=batch_size, seed=seed, shuffle=True,
                            drop_last=False, prefetch=prefetch, start_method=start_method)

    window_s = max(MIN_WINDOW_S, budget_s / (len(counts) * repeats))
    windows = measure_counts(make, counts, window_s=window_s, repeats=repeats)
    choice = recommend({n: [w.rate for w in ws] for n, ws in windows.items()}, cores=cores,
                       consumer_threads=consumer_threads, memory_cap=windows_memory_cap(windows))
    choice = AutoChoice(choice.workers, choice.reason, cores, choice.best, choice.spreads, choice.worker_limit,
                        time.perf_counter() - start)
    log.info("workers='auto' chose %d: %s", choice.workers, choice.reason)
    return choice
