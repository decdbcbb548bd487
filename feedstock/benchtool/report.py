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
    auto: Optional[AutoChoice] = None  # workers="auto"'s rule on this run's windows (= the verdict's count)
    consumer_threads: int = 1

    def to_dict(self) -> Dict[str, Any]:
        st = self.stages
        return {
            "source": self.description, "batch_size": self.batch_size, "cores": self.cores,
            "stages": {"source": st.source.to_dict(), "read": st.read.to_dict(),
                       "decode": st.decode.to_dict() if st.decode is not None else None,
                       "transforms": st.transforms.to_dict(),
                       "parse_at_load": st.load.to_dict() if st.load is not None else None,
                       "read_is_in_memory": st.in_memory},
            "loader": [dict(p.to_dict(), share_of_ceiling=_share(p.rate, self.verdict.ceiling))
                       for p in self.points],
            "ceiling_samples_per_s": self.verdict.ceiling,
            "memory": self.memory.to_dict(),
            "verdict": self.verdict.to_dict(),
            "torch_dataloader": {str(n): r for n, r in self.compare.items()},
            "auto": self.auto.stats() if self.auto is not None else None,
            "consumer_threads": self.consumer_threads,
            "extra": list(self.extra),
        }


def _share(rate: float, ceiling: float) -> Optional[float]:
    return rate / ceiling if ceiling > 0 else None


def _stage_row(label: str, rate: Optional[StageRate]) -> str:
    if rate is None:
        return f"  {label:<16}{'-':>12}{'':>10}{'':>12}{'':>7}   (the source does not decode)"
    mb = f"{rate.mb_per_s:10.1f}" if rate.nbytes and math.isfinite(rate.mb_per_s) else f"{'':>10}"
    return (f"  {label:<16}{rate.rate:12,.0f}{mb}{rate.per_record_s * 1e6:12,.1f}"
            f"{rate.cpu_fraction:7.0%}")


def _stage_rows(st: Stages) -> List[str]:
    """The stage rows, each named for what it timed (a CSV: its parse when opened, then reads from memory)."""
    rows = [f"  {'stage (1 core)':<16}{'records/s':>12}{'MB/s':>10}{'us/record':>12}{'CPU':>7}"]
    if st.load is not None:
        rows.append(_stage_row("parse at load", st.load) + "   (once, when the table is opened)")
    if st.in_memory:
        rows += [_stage_row("in-memory read", st.source) + "   (rows of the parsed table)",
                 _stage_row("transforms", st.transforms)]
        return rows
    return rows + [_stage_row("source", st.source), _stage_row(" read", st.read), _stage_row(" decode", st.decode),
                   _stage_row("transforms", st.transforms)]


def table(result: BenchResult) -> str:
    """The human-readable report: stages, the worker sweep against the ceiling, memory, verdict."""
    st, v = result.stages, result.verdict
    lines = [f"feedstock bench: {result.description}", f"batch size {result.batch_size}; "
             f"{result.cores} usable cores (affinity and cgroup quota)", "", *_stage_rows(st), ""]
    torch = result.compare
    head = (f"  {'workers':<9}{'samples/s median':>17}  {'range (windows)':>22}{'ceiling':>9}{'1st batch':>11}"
            f"{'wait':>7}{'busy':>7}")
    lines.append(head + (f"{'torch DL/s':>12}" if torch else ""))
    for p in result.points:
        name = "0 (here)" if p.workers == 0 else str(p.workers)
        share = _share(p.rate, v.ceiling)
        s = p.spread
        spread = f"{s.low:,.0f}-{s.high:,.0f} ({len(p.rates)})"
        row = (f"  {name:<9}{p.rate:17,.0f}  {spread:>22}{(share or 0):9.0%}{p.first_batch_s:10.3f}s"
               f"{p.wait_fraction:7.0%}{p.worker_busy if p.workers else 1.0:7.0%}")
        if torch:
            row += f"{torch[p.workers]:12,.0f}" if p.workers in torch else f"{'-':>12}"
        lines.append(row)
    lines += [f"  ceiling: {result.cores} cores x {v.one_core:,.0f} samples/s (1 core, in-process) = "
              f"{v.ceiling:,.0f} samples/s", "", result.memory.line(), *v.lines()]
    if result.auto is not None:
        lines.append(f"workers='auto' picks {result.auto.workers} from these windows (the same rule; "
                     f"{result.consumer_threads} consumer thread{'s' if result.consumer_threads != 1 else ''} "
                     f"counted: at most {result.auto.worker_limit} worker{'s' if result.auto.worker_limit != 1 else ''})")
    if result.extra:
        lines += ["", *result.extra]
    return "\n".join(lines)


def plot(result: BenchResult, path: str) -> str:
    """Samples/s against workers with the ceiling line (and torch's DataLoader when compared); a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    v = result.verdict
    xs = [p.workers for p in result.points]
    fig, ax = plt.subplots(figsize=(8.5, 4), dpi=100)
    try:
        meds = [p.rate for p in result.points]
        err = [[m - p.spread.low for m, p in zip(meds, result.points)],
               [p.spread.high - m for m, p in zip(meds, result.points)]]
        ax.errorbar(xs, meds, yerr=err, fmt="o-", capsize=4, label="feedstock Loader (median, range)")
        top = max(xs + [result.cores])
        ceiling = [min(max(n, 1), result.cores) * v.one_core for n in range(0, top + 1)]
        ax.plot(range(0, top + 1), ceiling, "--", color="grey", label="ceiling (cores x 1-core rate)")
        if result.compare:
            ns = sorted(result.compare)
            ax.plot(ns, [result.compare[n] for n in ns], "s-", label="torch DataLoader")
        rec = next((p.rate for p in result.points if p.workers == v.workers), None)
        if rec is not None:  # a ring around the point: a line would hide its range
            ax.plot([v.workers], [rec], "o", ms=16, mfc="none", mec="green", mew=2,
                    label=f"recommended (= workers='auto'): {v.workers}")
        if result.auto is not None and result.auto.worker_limit < top:  # counts the rule leaves out
            ax.axvspan(result.auto.worker_limit + 0.5, top + 0.5, color="grey", alpha=0.12,
                       label=f"over the core budget (+{result.consumer_threads} consumer thread)")
        ax.set_xlim(-0.5, top + 0.5)
        ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
        ax.set_xticks(range(0, top + 1, max(1, (top + 1) // 12)))  # whole workers only
        ax.set_xlabel("workers (0 = in-process)")
        ax.set_ylabel("samples/s")
        ax.set_title(f"bound by {v.bound}", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # off the data
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
