"""The verdict: which stage bounds throughput, and the worker count to use, each with its reason.

Pure functions of the measured numbers (tests build the inputs by hand):

* ``stage_s``: seconds per record of read, decode, transforms on one core;
  ``stage_cpu``: the CPU fraction of each (a read that waits on storage is low);
* ``rates``: samples/s of the Loader by worker count, one figure per window (0 = in-process,
  the 1-core rate); the bound uses each count's median;
* ``cores``: the cores this process may use.

The worker count is :func:`feedstock.pipeline.auto.recommend`'s, the rule ``workers="auto"``
applies to the same kind of measurement (see that module).

Bound, in order: **hand-off** when the workers deliver less than half of what their
cores compute on their own (batches are too cheap to be worth sending: read them
in-process); else the **stage** taking at least half of a record's time; else
**cores** when the workers already reach 80% of the machine ceiling (cores x the
1-core rate) with no stage dominating; else the heaviest stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..pipeline.auto import CONSUMER_THREADS, AutoChoice
from ..pipeline.auto import recommend as auto_recommend

STAGES = ("read", "decode", "transforms")
BOUNDS = STAGES + ("hand-off", "cores")
HANDOFF_EFFICIENCY = 0.5  # workers below this share of their cores' 1-core rate: hand-off bound
DOMINANT_SHARE = 0.5  # a stage with this share of a record's time bounds the pipeline
SATURATED = 0.8  # of the machine ceiling: the cores are the limit
IO_BOUND_CPU = 0.5  # a stage using less CPU than this while it runs waits on storage


@dataclass(frozen=True)
class Verdict:
    bound: str
    why: str
    workers: int
    workers_why: str
    ceiling: float  # samples/s: cores x the 1-core rate
    one_core: float
    shares: Dict[str, float] = field(default_factory=dict)  # of a record's one-core time, per stage
    choice: Optional[AutoChoice] = None  # the rule's full answer (spreads, best count, limit)

    def lines(self) -> List[str]:
        return [f"verdict: bound by {self.bound}: {self.why}", f"recommended workers: {self.workers}: {self.workers_why}"]

    def to_dict(self) -> Dict[str, Any]:
        return {"bound": self.bound, "why": self.why, "workers": self.workers, "workers_why": self.workers_why,
                "ceiling_samples_per_s": self.ceiling, "one_core_samples_per_s": self.one_core,
                "stage_shares": dict(self.shares)}


def io_bound(stage_s: Mapping[str, float], stage_cpu: Mapping[str, float]) -> bool:
    """True when the pipeline's one-core time is mostly spent off the CPU (waiting on storage)."""
    total = sum(stage_s.values())
    cpu = sum(stage_s[k] * stage_cpu.get(k, 1.0) for k in stage_s)
    return total > 0 and cpu / total < IO_BOUND_CPU


def expected(n: int, one_core: float, cores: int, io: bool) -> float:
    """Samples/s ``n`` workers would deliver if nothing but their own work limited them."""
    return (n if io else min(n, cores)) * one_core


Rates = Mapping[int, Union[float, Sequence[float]]]


def windows_of(rates: Rates) -> Dict[int, List[float]]:
    """Samples/s per window by count (a single figure counts as one window)."""
    return {n: [float(r)] if isinstance(r, (int, float)) else [float(x) for x in r] for n, r in rates.items()}


def recommend(rates: Rates, max_workers: Optional[int] = None, *, cores: Optional[int] = None,
              consumer_threads: int = CONSUMER_THREADS) -> Tuple[int, str]:
    """(count, reason) by :func:`feedstock.pipeline.auto.recommend` (``max_workers``: memory's cap;
    ``cores`` defaults to the largest count measured plus the consumer's threads: no core limit)."""
    windows = windows_of(rates)
    cores = cores if cores is not None else max(max(windows), 1) + consumer_threads
    choice = auto_recommend(windows, cores=cores, consumer_threads=consumer_threads, memory_cap=max_workers)
    return choice.workers, choice.reason


def judge(stage_s: Mapping[str, float], stage_cpu: Mapping[str, float], rates: Rates, cores: int,
          max_workers: Optional[int] = None, consumer_threads: int = CONSUMER_THREADS) -> Verdict:
    """See the module doc."""
    if not rates:
        raise ValueError("no Loader rates to judge")
    windows = windows_of(rates)
    choice = auto_recommend(windows, cores=cores, consumer_threads=consumer_threads, memory_cap=max_workers)
    medians = {n: choice.spreads[n].median for n in windows}
    total = sum(stage_s.values())
    shares = {k: (v / total if total > 0 else 0.0) for k, v in stage_s.items()}
    one_core = medians.get(0, 1.0 / total if total > 0 else 0.0)
    io = io_bound(stage_s, stage_cpu)
    ceiling = cores * one_core
    workers, workers_why = choice.workers, choice.reason
    worker_rates = {n: r for n, r in medians.items() if n > 0}
    effs = {n: r / expected(n, one_core, cores, io) for n, r in worker_rates.items()} if one_core else {}
    eff_n = max(effs, key=lambda n: effs[n]) if effs else 0
    heaviest = max(shares, key=lambda k: shares[k]) if shares else "read"
    best_rate = max(worker_rates.values(), default=0.0)
    if effs and effs[eff_n] < HANDOFF_EFFICIENCY:
        bound = "hand-off"
        why = (f"workers deliver at best {effs[eff_n]:.0%} of what their cores make on their own ({eff_n} "
               f"worker{'s' if eff_n > 1 else ''}: {worker_rates[eff_n]:,.0f} samples/s against "
               f"{one_core:,.0f}/s per core in-process): a batch costs more to hand over than to make")
    elif shares and shares[heaviest] >= DOMINANT_SHARE:
        bound, why = heaviest, _stage_why(heaviest, shares, stage_s, stage_cpu)
    elif not io and best_rate >= SATURATED * ceiling:
        bound = "cores"
        why = (f"the workers reach {best_rate / ceiling:.0%} of the ceiling ({cores} cores x {one_core:,.0f}/s) "
               f"and no stage dominates ({_shares_text(shares)}): more cores or cheaper stages would help")
    else:
        bound, why = heaviest, _stage_why(heaviest, shares, stage_s, stage_cpu)
    if worker_rates and bound != "hand-off":
        why += _scaling_note(worker_rates, cores, io)
    return Verdict(bound, why, workers, workers_why, ceiling, one_core, shares, choice)


def _shares_text(shares: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in shares.items())


def _stage_why(stage: str, shares: Mapping[str, float], stage_s: Mapping[str, float],
               stage_cpu: Mapping[str, float]) -> str:
    total_us = sum(stage_s.values()) * 1e6
    why = (f"{stage} takes {shares[stage]:.0%} of each record's one-core time "
           f"({stage_s[stage] * 1e6:,.0f} of {total_us:,.0f} us; {_shares_text(shares)})")
    if stage_cpu.get(stage, 1.0) < IO_BOUND_CPU:
        why += (f"; it is on the CPU only {stage_cpu[stage]:.0%} of that time (waiting on storage): "
                "workers beyond the core count can overlap the waits")
    return why


def _scaling_note(worker_rates: Mapping[int, float], cores: int, io: bool) -> str:
    """A note when throughput still grows at the largest count measured and that count uses every core."""
    counts = sorted(worker_rates)
    if len(counts) < 2 or io:
        return ""
    top, below = counts[-1], counts[-2]
    if top >= cores and worker_rates[top] >= 1.2 * worker_rates[below]:
        return f"; throughput still grows at {top} workers = all {cores} usable cores: more cores would help"
    return ""
