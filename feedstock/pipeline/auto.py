"""``workers="auto"``: a short probe of the pipeline picks the Loader's worker count, 0 included.

The probe (about a second of work at most) runs the same source and transforms

1. in this process (``workers=0``) for a few batches: ``t0``, seconds per batch;
2. with one worker: ``w`` (seconds per batch delivered, after the first), ``w_cpu``
   (the worker's CPU seconds per batch, pipe messages included: less than ``w``
   when reading waits on storage), ``h`` (this process's CPU seconds per batch
   received: the hand-off) and the worker's memory.

Batches per second are then predicted as ``1/t0`` in-process and, for ``n``
workers on ``C`` usable cores, ``min(n/w, 1/h, C/(w_cpu + h))``: workers add up
until the hand-off or the cores are the limit. The smallest count within 5% of
the best worker count wins (fewer workers: less memory, less contention with the
trainer), or 0 when in-process beats every worker count by more than 5% (a
trainer reading in-process stops while its batches are made). Counts never exceed the usable cores (affinity and cgroup quota, see
:mod:`.machine`) and shrink until ``n x worker memory + slots`` fits in 80% of
MemAvailable and the slots fit in /dev/shm. The probe's batches are smaller than
the Loader's when one batch alone would take long (times are scaled per sample).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

from ..protocols import Source, Transform
from . import machine
from .pool import choose_start_method

Transforms = Union[Transform, Sequence[Transform], None]

log = logging.getLogger(__name__)

NEAR_BEST = 0.95  # the smallest count predicted within 5% of the best is chosen
MEMORY_SHARE = 0.8  # of MemAvailable that workers and slots may take
SHM_SHARE = 0.9  # of /dev/shm free that the slots may take
PROBE_BATCH_S = 0.02  # the probe's batches hold about this much in-process work
MAX_PROBE_BATCHES = 20_000
SPAWN_HANDOFF_S = 3e-4  # hand-off CPU per batch assumed when no worker is probed (pipe round trip here)


@dataclass(frozen=True)
class Probe:
    """Per batch of the Loader's size: what the probe measured (``h`` does not scale with rows)."""

    inline_s: float  # t0: wall seconds per batch, in this process
    worker_s: float  # w: seconds per batch delivered by one worker (steady state)
    worker_cpu_s: float  # the worker's CPU seconds per batch (pipe messages included)
    handoff_s: float  # h: this process's CPU seconds per batch received from a worker
    worker_bytes: int = 0  # PSS of one worker (0: unknown)
    slot_bytes: int = 0  # the Loader's slots in /dev/shm (prefetch x one batch)
    measured_worker: bool = True  # False: no worker was started (spawn); w and h are estimates


@dataclass(frozen=True)
class AutoChoice:
    """The count chosen, why, and the predictions behind it (``stats()`` of the Loader reports it)."""

    workers: int
    reason: str
    cores: int
    predicted: Dict[int, float] = field(default_factory=dict)  # batches/s by worker count
    probe_s: float = 0.0

    def stats(self) -> Dict[str, Any]:
        return {"workers_auto": self.workers, "workers_auto_reason": self.reason,
                "workers_auto_cores": self.cores, "workers_auto_probe_s": self.probe_s}


def predict(probe: Probe, n: int, cores: int) -> float:
    """Batches per second with ``n`` workers (0: in-process) according to the probe."""
    if n == 0:
        return 1.0 / max(probe.inline_s, 1e-9)
    by_workers = n / max(probe.worker_s, 1e-9)
    by_handoff = 1.0 / max(probe.handoff_s, 1e-9)
    by_cores = cores / max(probe.worker_cpu_s + probe.handoff_s, 1e-9)
    return min(by_workers, by_handoff, by_cores)


def pick_count(rates: Mapping[int, float]) -> int:
    """0 when in-process beats every worker count by more than 5%; else the fewest workers within 5%
    of the best worker count (workers let a trainer compute while its next batches are made)."""
    workers = {n: r for n, r in rates.items() if n > 0}
    if not workers:
        return min(rates)
    best = max(workers.values())
    if rates.get(0, 0.0) * NEAR_BEST > best:
        return 0
    return min(n for n, r in workers.items() if r >= NEAR_BEST * best)


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


def decide(probe: Probe, *, cores: int, mem_avail: Optional[int], shm_free: Optional[int],
           probe_s: float = 0.0) -> AutoChoice:
    """Pure decision from measurements (tests build ``Probe`` by hand)."""
    if cores < 1:
        raise ValueError(f"{cores=} must be >= 1")
    cap, why_cap = memory_cap(probe.worker_bytes, probe.slot_bytes, mem_avail, shm_free)
    limit = min(cores, cap)
    predicted = {n: predict(probe, n, cores) for n in range(0, limit + 1)}
    workers = pick_count(predicted)
    reason = _reason(probe, workers, cores, predicted)
    if cap < cores:
        reason += f"; memory allows {cap}: {why_cap}"
    return AutoChoice(workers, reason, cores, predicted, probe_s)


def _reason(probe: Probe, workers: int, cores: int, predicted: Dict[int, float]) -> str:
    ms = lambda s: f"{s * 1e3:.2f} ms"  # noqa: E731
    measured = (f"in-process {ms(probe.inline_s)}/batch, a worker {ms(probe.worker_s)}/batch "
                f"(CPU {ms(probe.worker_cpu_s)}), hand-off {ms(probe.handoff_s)} CPU/batch"
                + ("" if probe.measured_worker else " (estimated: no worker probed under spawn)"))
    rates = ", ".join(f"{n}: {r:,.1f}" for n, r in predicted.items())
    if workers == 0:
        why = "in-process: producing a batch here costs less than receiving one from a worker"
    elif workers >= cores:
        why = f"{workers} workers = the {cores} usable cores"
    else:
        why = f"{workers} of {cores} usable cores: more would not raise throughput by 5%"
    return f"{why} ({measured}; predicted batches/s {rates})"


# ----- the probe ----------------------------------------------------------------------------------
def _sample_seconds(source: Source, compose: Transform, seed: int) -> float:
    """Seconds to read and transform one record in this process (record 0 warms up, 1 is timed)."""
    from .. import rng as rng_module

    times = []
    for i in range(min(len(source), 2)):
        t0 = time.perf_counter()
        compose(source[i], rng_module.sample_rng(seed, 0, i))
        times.append(time.perf_counter() - t0)
    return times[-1] if times else 0.0


def _timed_batches(loader: Any, budget_s: float, max_batches: int) -> Tuple[int, float, float]:
    """(batches, wall s, this process's CPU s) after the first batch (start-up excluded), within budget."""
    deadline = time.perf_counter() + budget_s
    batches, start, cpu0 = -1, 0.0, 0.0
    while True:
        for _ in loader:
            if batches < 0:
                start, cpu0 = time.perf_counter(), time.process_time()
            batches += 1
            if batches >= max_batches or time.perf_counter() >= deadline:
                return batches, time.perf_counter() - start, time.process_time() - cpu0
        if len(loader) == 0:
            return 0, 0.0, 0.0


def run_probe(source: Source, transforms: Transforms, *, loader_class: Callable[..., Any], batch_size: int, seed: int,
              prefetch: int, start_method: str, budget_s: float = 0.8) -> Probe:
    """Measure the pipeline in this process and with one worker (see the module doc); ``loader_class``
    is the Loader (passed in: the Loader calls this while it is being built)."""
    from ..transforms.base import as_compose

    Loader = loader_class

    compose = as_compose(transforms)
    per_sample = _sample_seconds(source, compose, seed)
    probe_batch = max(1, min(batch_size, int(PROBE_BATCH_S / max(per_sample, 1e-9))))
    scale = batch_size / probe_batch
    kw = dict(batch_size=probe_batch, shuffle=True, seed=seed, drop_last=False, world_size=1, rank=0)
    with Loader(source, compose, workers=0, **kw) as inline:
        n, wall, _ = _timed_batches(inline, 0.35 * budget_s, MAX_PROBE_BATCHES)
        slot = inline.slot_arrays()
        slot_bytes = int(sum(a.nbytes for a in slot[0].values()) * scale) * prefetch if slot else 0
    inline_s = (wall / n if n else per_sample * probe_batch) * scale
    if choose_start_method(start_method) != "fork":  # a spawned worker alone takes over a second
        return Probe(inline_s, inline_s, inline_s, SPAWN_HANDOFF_S, 0, slot_bytes, measured_worker=False)
    with Loader(source, compose, workers=1, prefetch=max(2, min(prefetch, 4)), start_method=start_method,
                **kw) as one:
        one.start()
        pid = one.worker_pids()[0]
        cpu_w0 = machine.cpu_seconds(pid) or 0.0
        n, wall, main_cpu = _timed_batches(one, 0.55 * budget_s, MAX_PROBE_BATCHES)
        stats = one.stats()
        worker_cpu = (machine.cpu_seconds(pid) or cpu_w0) - cpu_w0
        worker_bytes = machine.pss_bytes(pid) or 0
    if n == 0:
        return Probe(inline_s, inline_s, inline_s, SPAWN_HANDOFF_S, worker_bytes, slot_bytes)
    # The worker's CPU clock ticks in 10 ms steps: below a few ticks its busy time is the better measure.
    busy = (stats["read_s"] + stats["transform_s"]) / max(stats["batches"], 1)  # stats: the last pass
    cpu = worker_cpu / (n + 1) if worker_cpu >= 0.05 else busy
    return Probe(inline_s, wall / n * scale, cpu * scale, main_cpu / n, worker_bytes, slot_bytes)


def choose_workers(source: Source, transforms: Transforms, *, loader_class: Callable[..., Any], batch_size: int, seed: int = 0,
                   prefetch: int = 4, start_method: str = "auto", budget_s: float = 0.8) -> AutoChoice:
    """The worker count for a Loader over ``source``/``transforms``; see the module doc."""
    cores = machine.usable_cores()
    start = time.perf_counter()
    probe = run_probe(source, transforms, loader_class=loader_class, batch_size=batch_size, seed=seed, prefetch=prefetch,
                      start_method=start_method, budget_s=budget_s)
    choice = decide(probe, cores=cores, mem_avail=machine.mem_available(),
                    shm_free=machine.shm_free(), probe_s=time.perf_counter() - start)
    log.info("workers='auto' chose %d: %s", choice.workers, choice.reason)
    return choice
