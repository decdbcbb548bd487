"""The bench result as a readable table, as JSON, and as a plot of throughput against workers."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..pipeline.auto import AutoChoice
from .memory import Memory
from .stages import StageRate, Stages
from .sweep import SweepPoint
from .verdict import Verdict

MIB = 2**20


@dataclass
class BenchResult:
    """Everything one ``feedstock bench`` run measured."""

    description: str
    batch_size: int
    cores: int
    stages: Stages
    points: List[SweepPoint]  # workers=0 (in-process: the 1-core rate) first when measured
    memory: Memory
    verdict: Verdict
    compare: Dict[int, float] = field(default_factory=dict)  # torch DataLoader samples/s by workers
    extra: List[str] = field(default_factory=list)  # lines of --caffe-layer and --device
    auto: Optional[AutoChoice] = None  # what Loader(workers="auto") picked in this run

    def to_dict(self) -> Dict[str, Any]:
        st = self.stages
        return {
            "source": self.description, "batch_size": self.batch_size, "cores": self.cores,
            "stages": {"source": st.source.to_dict(), "read": st.read.to_dict(),
                       "decode": st.decode.to_dict() if st.decode is not None else None,
                       "transforms": st.transforms.to_dict()},
            "loader": [dict(p.to_dict(), share_of_ceiling=_share(p.rate, self.verdict.ceiling))
                       for p in self.points],
            "ceiling_samples_per_s": self.verdict.ceiling,
            "memory": self.memory.to_dict(),
            "verdict": self.verdict.to_dict(),
            "torch_dataloader": {str(n): r for n, r in self.compare.items()},
            "auto": self.auto.stats() if self.auto is not None else None,
            "extra": list(self.extra),
        }


def _share(rate: float, ceiling: float) -> Optional[float]:
    return rate / ceiling if ceiling > 0 else None


def _stage_row(label: str, rate: Optional[StageRate]) -> str:
    if rate is None:
        return f"  {label:<12}{'-':>12}{'':>10}{'':>12}{'':>7}   (the source does not decode)"
    mb = f"{rate.mb_per_s:10.1f}" if rate.nbytes and math.isfinite(rate.mb_per_s) else f"{'':>10}"
    return (f"  {label:<12}{rate.rate:12,.0f}{mb}{rate.per_record_s * 1e6:12,.1f}"
            f"{rate.cpu_fraction:7.0%}")


def table(result: BenchResult) -> str:
    """The human-readable report: stages, the worker sweep against the ceiling, memory, verdict."""
    st, v = result.stages, result.verdict
    lines = [f"feedstock bench: {result.description}", f"batch size {result.batch_size}; "
             f"{result.cores} usable cores (affinity and cgroup quota)", "",
             f"  {'stage (1 core)':<12}{'records/s':>12}{'MB/s':>10}{'us/record':>12}{'CPU':>7}",
             _stage_row("source", st.source), _stage_row(" read", st.read), _stage_row(" decode", st.decode),
             _stage_row("transforms", st.transforms), ""]
    torch = result.compare
    head = f"  {'workers':<9}{'samples/s':>12}{'batches/s':>11}{'ceiling':>9}{'1st batch':>11}{'wait':>7}{'busy':>7}"
    lines.append(head + (f"{'torch DL/s':>12}" if torch else ""))
    for p in result.points:
        name = "0 (here)" if p.workers == 0 else str(p.workers)
        share = _share(p.rate, v.ceiling)
        row = (f"  {name:<9}{p.rate:12,.0f}{p.batch_rate:11,.1f}{(share or 0):9.0%}{p.first_batch_s:10.3f}s"
               f"{p.wait_fraction:7.0%}{p.worker_busy if p.workers else 1.0:7.0%}")
        if torch:
            row += f"{torch[p.workers]:12,.0f}" if p.workers in torch else f"{'-':>12}"
        lines.append(row)
    lines += [f"  ceiling: {result.cores} cores x {v.one_core:,.0f} samples/s (1 core, in-process) = "
              f"{v.ceiling:,.0f} samples/s", "", result.memory.line(), *v.lines()]
    if result.auto is not None:
        lines.append(f"workers='auto' picks {result.auto.workers} (probe {result.auto.probe_s:.2f} s): "
                     f"{result.auto.reason}")
    if result.extra:
        lines += ["", *result.extra]
    return "\n".join(lines)


def plot(result: BenchResult, path: str) -> str:
    """Samples/s against workers with the ceiling line (and torch's DataLoader when compared); a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    v = result.verdict
    xs = [p.workers for p in result.points]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    try:
        ax.plot(xs, [p.rate for p in result.points], "o-", label="feedstock Loader")
        top = max(xs + [result.cores])
        ceiling = [min(max(n, 1), result.cores) * v.one_core for n in range(0, top + 1)]
        ax.plot(range(0, top + 1), ceiling, "--", color="grey", label="ceiling (cores x 1-core rate)")
        if result.compare:
            ns = sorted(result.compare)
            ax.plot(ns, [result.compare[n] for n in ns], "s-", label="torch DataLoader")
        ax.axvline(v.workers, color="green", alpha=0.3, label=f"recommended: {v.workers}")
        ax.set_xlabel("workers (0 = in-process)")
        ax.set_ylabel("samples/s")
        ax.set_title(f"bound by {v.bound}", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
