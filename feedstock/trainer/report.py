"""TrainReport: what a run did (metrics, throughput, data wait, curves, files) and its metrics JSON."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

from ..device import FeedStats

if TYPE_CHECKING:
    from .nn.net import Net

# Evaluation metrics whose history is kept as test_<name> (the meter may give more, e.g. log_loss).
BASE_METRICS = ("loss", "accuracy")


@dataclass
class TrainReport:
    """Final metrics, throughput, data-wait, per-epoch timing, curves and files of one train() call."""

    model: str
    backend: str
    iters: int
    batch_size: int
    train_loss: float
    train_accuracy: float
    test_loss: Optional[float]
    test_accuracy: Optional[float]
    images_per_s: float
    step_time_s: float
    data_wait_s: float
    data_wait_fraction: float
    wall_s: float
    epochs: List[FeedStats] = field(default_factory=list)
    history: Dict[str, List[float]] = field(default_factory=dict)
    files: List[str] = field(default_factory=list)
    net: Optional[Net] = field(default=None, repr=False)
    task: str = "classification"
    test_metrics: Dict[str, float] = field(default_factory=dict)  # the last test pass: loss, accuracy, ...
    threads: str = ""  # the thread split (feedstock.threads.Split.line)
    class_names: Optional[List[str]] = None  # code k is class_names[k] (the data's mapping)

    def summary(self) -> str:
        return "\n".join([
            f"model {self.model} on {self.backend}: {self.iters} iterations of batch {self.batch_size} "
            f"in {self.wall_s:.1f} s",
            self._train_line(),
            f"test accuracy {self._test_line()}",
            f"throughput {self.images_per_s:.0f} images/s, step {self.step_time_s * 1e3:.2f} ms",
            f"data wait {self.data_wait_s:.3f} s = {self.data_wait_fraction:.2%} of step time",
        ] + ([self.threads] if self.threads else []) + [f"  {e.line()}" for e in self.epochs])

    def _train_line(self) -> str:
        if not self.history.get("iter"):
            return "train loss n/a: no training steps ran (max_iter reached already)"
        return f"train loss {self.train_loss:.4f}, train accuracy {self.train_accuracy:.4f} (last 10% of steps)"

    def _test_line(self) -> str:
        if self.test_accuracy is None:
            return "n/a"
        extra = "".join(f", {k.replace('_', '-')} {v:.4f}" for k, v in self.test_metrics.items()
                        if k not in BASE_METRICS and isinstance(v, float))
        return f"{self.test_accuracy:.4f} (loss {self.test_loss:.4f}{extra})"

    def metrics(self) -> Dict[str, object]:
        """The JSON written as <model>_metrics.json: final train/test metrics and the test curves."""
        h = self.history
        curves = {k: h[k] for k in h if k.startswith("test_")}
        return {"model": self.model, "task": self.task, "iters": self.iters, "batch_size": self.batch_size,
                "train": {"loss": _finite(self.train_loss), "accuracy": _finite(self.train_accuracy)},
                "test": {k: _finite(v) for k, v in self.test_metrics.items()}, "test_curves": curves,
                "images_per_s": self.images_per_s, "data_wait_fraction": self.data_wait_fraction,
                **self._per_class()}

    def _per_class(self) -> Dict[str, Any]:
        """The class names and, for segmentation, the IoU of each class by name (iou_<code> by code)."""
        if not self.class_names:
            return {}
        out: Dict[str, Any] = {"class_names": list(self.class_names)}
        ious = {name: _finite(self.test_metrics[f"iou_{k}"]) for k, name in enumerate(self.class_names)
                if f"iou_{k}" in self.test_metrics}
        if ious:
            out["test_iou_by_class"] = ious
        return out


def _finite(v: object) -> object:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def write_metrics(report: TrainReport, path: Path) -> Path:
    path.write_text(json.dumps(report.metrics(), indent=1, default=float) + "\n")
    return path


def build_report(run: Any, backend: str, batch_size: int, stats: List[FeedStats], wall: float) -> TrainReport:
    """The report of a finished _Run (see loop.py)."""
    h = run.history
    tail = max(1, len(h["iter"]) // 10)
    compute = sum(s.compute_s for s in stats)
    wait = sum(s.wait_s for s in stats)
    steps = sum(s.steps for s in stats)
    samples = sum(s.samples for s in stats)
    busy = compute + wait
    last = run.last_test
    return TrainReport(
        model=run.mdef.name, backend=backend, iters=run.solver.iter, batch_size=batch_size,
        train_loss=float(np.mean(h["train_loss"][-tail:])) if h["iter"] else float("nan"),
        train_accuracy=float(np.mean(h["train_accuracy"][-tail:])) if h["iter"] else float("nan"),
        test_loss=last.get("loss"), test_accuracy=last.get("accuracy"),
        images_per_s=samples / busy if busy > 0 else 0.0, step_time_s=busy / steps if steps else 0.0,
        data_wait_s=wait, data_wait_fraction=wait / busy if busy > 0 else 0.0,
        wall_s=wall, epochs=list(stats), history=h, files=run.files, net=run.net, task=run.net.task,
        test_metrics=dict(last))
