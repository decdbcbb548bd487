"""Training pictures as PNG (matplotlib's Agg canvas, no pyplot state): curves and first-layer filters."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np

PathLike = Union[str, Path]


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    v = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_curves(history: Mapping[str, Sequence[float]], path: PathLike, *, title: str = "") -> Path:
    """Train loss/accuracy per iteration (smoothed) and test loss/accuracy per test pass."""
    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    it = np.asarray(history.get("iter", []))
    window = max(1, len(it) // 50)
    if len(it):
        ax_loss.plot(it, smooth(history["train_loss"], window), label="train", lw=1)
        ax_acc.plot(it, smooth(history["train_accuracy"], window), label="train", lw=1)
    if history.get("test_iter"):
        ax_loss.plot(history["test_iter"], history["test_loss"], "o-", label="test")
        ax_acc.plot(history["test_iter"], history["test_accuracy"], "o-", label="test")
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("iteration")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.set_ylim(0, 1)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def filter_grid(weights: np.ndarray) -> np.ndarray:
    """First-layer weights (O, C, kh, kw) tiled into one image: each filter min-max scaled, 1-px gaps."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"filters must be (out, in, kh, kw), got shape {w.shape}")
    w = w.mean(axis=1) if w.shape[1] != 3 else w.transpose(0, 2, 3, 1)
    lo = w.reshape(len(w), -1).min(axis=1).reshape((-1,) + (1,) * (w.ndim - 1))
    hi = w.reshape(len(w), -1).max(axis=1).reshape((-1,) + (1,) * (w.ndim - 1))
    w = (w - lo) / np.where(hi > lo, hi - lo, 1.0)
    n = len(w)
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    kh, kw = w.shape[1:3]
    grid = np.ones((rows * (kh + 1) + 1, cols * (kw + 1) + 1) + w.shape[3:])
    for i in range(n):
        r, c = divmod(i, cols)
        grid[1 + r * (kh + 1):1 + r * (kh + 1) + kh, 1 + c * (kw + 1):1 + c * (kw + 1) + kw] = w[i]
    return grid


def plot_filters(weights: np.ndarray, path: PathLike, *, title: str = "first-layer filters") -> Path:
    """Conv filters as a grid of small images; an InnerProduct weight (O, K) is shown as (O, K) heatmap rows."""
    w = np.asarray(weights)
    fig = _figure(5, 5)
    ax = fig.add_subplot(1, 1, 1)
    if w.ndim == 4:
        ax.imshow(filter_grid(w), cmap="gray", interpolation="nearest")
        ax.set_axis_off()
    else:
        ax.imshow(w.reshape(len(w), -1), cmap="coolwarm", aspect="auto", interpolation="nearest")
        ax.set_xlabel("input")
        ax.set_ylabel("unit")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
