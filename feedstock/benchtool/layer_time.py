"""``--caffe-layer PARAM_STR``: what the Caffe DataLayer's forward() costs the solver (Caffe's ``caffe time``).

The layer runs on duck-typed blobs (``.data``/``.diff`` float32 arrays and
``reshape(*dims)``, as pycaffe's behave); each step times reshape()+forward()
and then a plain ``np.copyto`` of an equally large ready batch into the same
tops, the least a data layer can cost. ``step_s`` simulates the solver's own
step between forwards (a net computing while the workers fill the next batch).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .sweep import Tick


class Blob:
    """A pycaffe-like blob: float32 ``data`` and ``diff``, reshaped by ``reshape(*dims)``."""

    def __init__(self) -> None:
        self.data = np.zeros((0,), np.float32)
        self.diff = np.zeros((0,), np.float32)

    def reshape(self, *dims: int) -> None:
        self.data = np.zeros(dims, np.float32)  # zeros: pages touched, as Caffe's blobs would be warm
        self.diff = np.zeros(dims, np.float32)


@dataclass(frozen=True)
class Distribution:
    """Seconds per call: median, 99th percentile, max, over ``n`` calls."""

    median: float
    p99: float
    max: float
    n: int

    @classmethod
    def of(cls, seconds: List[float]) -> "Distribution":
        ordered = sorted(seconds)
        p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
        return cls(statistics.median(ordered), p99, ordered[-1], len(ordered))

    def text(self) -> str:
        return f"median {self.median * 1e3:8.3f} ms  p99 {self.p99 * 1e3:8.3f} ms  max {self.max * 1e3:8.3f} ms"

    def to_dict(self) -> Dict[str, float]:
        return {"median_s": self.median, "p99_s": self.p99, "max_s": self.max, "n": self.n}


@dataclass(frozen=True)
class LayerTiming:
    forward: Distribution
    copy: Distribution
    shapes: List[tuple]

    def lines(self) -> List[str]:
        shapes = ", ".join("x".join(map(str, s)) for s in self.shapes)
        return [f"Caffe DataLayer (tops {shapes}), {self.forward.n} forwards:",
                f"  DataLayer.forward  {self.forward.text()}",
                f"  plain np.copyto    {self.copy.text()}",
                f"  forward / copy (median) {self.forward.median / max(self.copy.median, 1e-12):.2f}"]

    def to_dict(self) -> Dict[str, object]:
        return {"forward": self.forward.to_dict(), "copy": self.copy.to_dict(), "tops": [list(s) for s in self.shapes]}


def _tops(param_str: str) -> int:
    from ..stream import parse_param_str

    tops = parse_param_str(param_str).get("tops")
    return len(tops) if isinstance(tops, (list, tuple)) else 2


def time_layer(param_str: str, *, steps: int = 50, warmup: int = 2, step_s: float = 0.0, phase: int = 0,
               tick: Optional[Tick] = None) -> LayerTiming:
    """Set up a DataLayer with ``param_str`` and time ``steps`` forwards against plain copies."""
    from ..caffe_layer import DataLayer

    if steps < 1:
        raise ValueError(f"{steps=} must be >= 1")
    layer = DataLayer()
    layer.param_str, layer.phase = param_str, phase
    top = [Blob() for _ in range(_tops(param_str))]
    forward_s: List[float] = []
    copy_s: List[float] = []
    try:
        layer.setup([], top)
        ready = [np.random.default_rng(0).standard_normal(b.data.shape, dtype=np.float32) for b in top]
        for step in range(steps + warmup):
            t0 = time.perf_counter()
            layer.reshape([], top)
            layer.forward([], top)
            t1 = time.perf_counter()
            for blob, src in zip(top, ready):
                np.copyto(blob.data, src)
            t2 = time.perf_counter()
            if step >= warmup:  # the first batches are filled while a solver would be starting
                forward_s.append(t1 - t0)
                copy_s.append(t2 - t1)
            if tick is not None:
                tick()
            if step_s > 0:
                time.sleep(step_s)
    finally:
        layer.close()
    return LayerTiming(Distribution.of(forward_s), Distribution.of(copy_s), [b.data.shape for b in top])
