"""The full Loader at each worker count, the consumer taking batches as fast as it can."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

from ..pipeline import machine

MakeLoader = Callable[[int], Any]  # worker count -> a fresh Loader (closed by the caller)
Tick = Callable[[], None]


@dataclass(frozen=True)
class SweepPoint:
    """One Loader run: steady-state rates (after the first batch) plus its start-up and memory."""

    workers: int
    batches: int
    samples: int
    elapsed_s: float  # from the first batch to the last
    first_batch_s: float  # start-up: workers, slots, source opened, first batch filled
    wait_fraction: float  # of the consumer's time spent waiting for a batch (last pass)
    worker_busy: float  # worker seconds busy (read + transforms) per worker-second, last pass
    main_cpu_s: float  # this process's CPU seconds over the steady state
    worker_pss: List[int] = field(default_factory=list)  # bytes per worker, at the end
    slot_bytes: int = 0  # shared memory of all the slots

    @property
    def rate(self) -> float:
        return self.samples / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def batch_rate(self) -> float:
        return self.batches / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> Dict[str, Any]:
        return {"workers": self.workers, "samples_per_s": self.rate, "batches_per_s": self.batch_rate,
                "batches": self.batches, "samples": self.samples, "elapsed_s": self.elapsed_s,
                "first_batch_s": self.first_batch_s, "wait_fraction": self.wait_fraction,
                "worker_busy": self.worker_busy, "main_cpu_s": self.main_cpu_s,
                "worker_pss_bytes": list(self.worker_pss), "slot_bytes": self.slot_bytes}


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


def parse_counts(text: str) -> List[int]:
    """``"1,2,4"`` -> [1, 2, 4]; ValueError naming the flag on anything else."""
    try:
        counts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--workers {text!r}: expected counts separated by commas, e.g. 1,2,4") from None
    if not counts or any(c < 0 for c in counts):
        raise ValueError(f"--workers {text!r}: expected counts >= 0, e.g. 0,1,2,4")
    return sorted(set(counts))


@dataclass(frozen=True)
class Steady:
    """Batches taken after the first one (the steady state), and what they cost."""

    first_s: float  # from ``start`` to the first batch
    batches: int
    samples: int
    elapsed_s: float  # from the first batch to the last
    cpu_s: float  # this process's CPU seconds over the same span


def steady_batches(loader: Iterable[Mapping[str, Any]], seconds: float, *, min_batches: int = 1,
                   tick: Optional[Tick] = None, start: Optional[float] = None) -> Steady:
    """Take batches for about ``seconds`` after the first (epochs repeat as needed), at least ``min_batches``
    of them; ValueError when a whole pass yields nothing."""
    start = time.perf_counter() if start is None else start
    first, t0, c0, batches, samples, deadline = None, 0.0, 0.0, 0, 0, float("inf")
    while batches < min_batches or time.perf_counter() < deadline:
        empty = True
        for batch in loader:
            empty = False
            if first is None:  # the steady state starts after the first batch
                first = time.perf_counter() - start
                t0, c0, deadline = time.perf_counter(), time.process_time(), time.perf_counter() + seconds
            else:
                batches += 1
                samples += len(next(iter(batch.values())))
            if tick is not None:
                tick()
            if batches >= min_batches and time.perf_counter() >= deadline:
                break
        if empty:
            raise ValueError("the loader yields no batches (batch size larger than the source with drop_last?)")
    return Steady(first or 0.0, batches, samples, time.perf_counter() - t0, time.process_time() - c0)


def measure_loader(make_loader: MakeLoader, workers: int, *, seconds: float, tick: Optional[Tick] = None,
                   min_batches: int = 2) -> SweepPoint:
    """Take batches for about ``seconds`` after the first (epochs repeat as needed), then read memory."""
    start = time.perf_counter()
    with make_loader(workers) as loader:
        if len(loader) == 0:
            raise ValueError("the Loader yields no batches (batch size larger than the source with drop_last?)")
        steady = steady_batches(loader, seconds, min_batches=min_batches, tick=tick, start=start)
        stats = loader.stats()
        pss = [machine.pss_bytes(pid) or 0 for pid in loader.worker_pids()]
        slots = sum(a.nbytes for slot in loader.slot_arrays() for a in slot.values())
    busy = (stats["read_s"] + stats["transform_s"]) / max(stats["elapsed_s"] * max(workers, 1), 1e-9)
    return SweepPoint(workers, steady.batches, steady.samples, steady.elapsed_s, steady.first_s,
                      stats["wait_fraction"], min(busy, 1.0), steady.cpu_s, pss, slots)
