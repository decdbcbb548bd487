"""The full Loader at each worker count, the consumer taking batches as fast as it can.

The windows come from :func:`feedstock.pipeline.auto.measure_counts`, the measurement
``workers="auto"`` makes too; a :class:`SweepPoint` summarises one count's windows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence

from ..pipeline.auto import MakeLoader, Spread, Steady, Tick, Window, default_counts, steady_batches

__all__ = ["MakeLoader", "Tick", "Steady", "SweepPoint", "default_counts", "parse_counts", "steady_batches"]


@dataclass(frozen=True)
class SweepPoint:
    """One worker count over its windows: the median rate and its range, start-up and memory."""

    workers: int
    rates: List[float]  # samples/s per window
    batches: int  # over all windows
    samples: int
    elapsed_s: float
    first_batch_s: float  # start-up: workers, slots, source opened, first batch filled (median)
    wait_fraction: float  # of the consumer's time spent waiting for a batch (last window)
    worker_busy: float  # worker seconds busy (read + transforms) per worker-second, last window
    main_cpu_s: float  # this process's CPU seconds over the steady states
    worker_pss: List[int] = field(default_factory=list)  # bytes per worker, at the end of the last window
    slot_bytes: int = 0  # shared memory of all the slots
    batch_size: int = 0

    @classmethod
    def of(cls, windows: Sequence[Window]) -> "SweepPoint":
        last = windows[-1]
        firsts = sorted(w.first_batch_s for w in windows)
        return cls(last.workers, [w.rate for w in windows], sum(w.batches for w in windows),
                   sum(w.samples for w in windows), sum(w.elapsed_s for w in windows), firsts[len(firsts) // 2],
                   last.wait_fraction, last.worker_busy, sum(w.main_cpu_s for w in windows), list(last.worker_pss),
                   last.slot_bytes, round(sum(w.samples for w in windows) / max(sum(w.batches for w in windows), 1)))

    @property
    def spread(self) -> Spread:
        return Spread.of(self.rates)

    @property
    def rate(self) -> float:
        """Samples/s: the median over the windows."""
        return self.spread.median

    @property
    def batch_rate(self) -> float:
        return self.rate / self.batch_size if self.batch_size else 0.0

    def to_dict(self) -> Dict[str, Any]:
        s = self.spread
        return {"workers": self.workers, "samples_per_s": s.median, "samples_per_s_low": s.low,
                "samples_per_s_high": s.high, "samples_per_s_windows": list(self.rates),
                "batches_per_s": self.batch_rate, "batches": self.batches, "samples": self.samples,
                "elapsed_s": self.elapsed_s, "first_batch_s": self.first_batch_s,
                "wait_fraction": self.wait_fraction, "worker_busy": self.worker_busy, "main_cpu_s": self.main_cpu_s,
                "worker_pss_bytes": list(self.worker_pss), "slot_bytes": self.slot_bytes}


def parse_counts(text: str) -> List[int]:
    """``"1,2,4"`` -> [1, 2, 4]; ValueError naming the flag on anything else."""
    try:
        counts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--workers {text!r}: expected counts separated by commas, e.g. 1,2,4") from None
    if not counts or any(c < 0 for c in counts):
        raise ValueError(f"--workers {text!r}: expected counts >= 0, e.g. 0,1,2,4")
    return sorted(set(counts))
