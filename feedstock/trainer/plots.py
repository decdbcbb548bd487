"""Training pictures as PNG (matplotlib's Agg canvas, no pyplot state): curves, filters, weights, confusion."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Mapping, Optional, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .nn.net import Net

PathLike = Union[str, Path]


def _figure(width: float, height: float) -> Figure:
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


def distinct_extras(history: Mapping[str, Sequence[float]]) -> List[str]:
    """The extra test curves worth drawing: one equal to a curve already drawn (a classifier's test
    log-loss is its test loss) would hide under it, so it is left out (its legend names both)."""
    out = []
    for key in extra_metrics(history):
        drawn = ("test_loss",) if "loss" in key else ("test_accuracy",)
        if not any(k in history and np.allclose(history[key], history[k], rtol=1e-6, atol=1e-9) for k in drawn):
            out.append(key)
    return out


def plot_curves(history: Mapping[str, Sequence[float]], path: PathLike, *, title: str = "") -> Path:
    """Train loss/accuracy per iteration (smoothed) and test loss/accuracy per test pass, each series in its
    own colour and marker, legends under the axes (never over the lines)."""
    fig = _figure(10, 4.6)
    ax_loss, ax_acc = fig.subplots(1, 2)
    it = np.asarray(history.get("iter", []))
    window = max(1, len(it) // 50)
    if len(it):
        label = "train" + (f" (mean of {window})" if window > 1 else "")
        ax_loss.plot(it, smooth(history["train_loss"], window), color="#4477AA", label=label, lw=1)
        ax_acc.plot(it, smooth(history["train_accuracy"], window), color="#4477AA", label=label, lw=1)
    if history.get("test_iter"):
        same = [k for k in extra_metrics(history) if k not in distinct_extras(history)]
        aka = lambda loss: "".join(f" = {k[5:].replace('_', '-')}" for k in same if ("loss" in k) == loss)  # noqa: E731
        ax_loss.plot(history["test_iter"], history["test_loss"], "o-", color="#EE6677", label="test" + aka(True))
        ax_acc.plot(history["test_iter"], history["test_accuracy"], "o-", color="#EE6677",
                    label="test" + aka(False))
        colours = iter(("#228833", "#CCBB44", "#AA3377", "#66CCEE", "#BBBBBB"))
        for key in distinct_extras(history):  # e.g. test_mean_iou next to the pixel accuracy
            ax = ax_loss if "loss" in key else ax_acc
            ax.plot(history["test_iter"], history[key], "s--", color=next(colours, "black"),
                    label="test " + key[5:].replace("_", "-"))
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("iteration")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False)
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


def extra_metrics(history: Mapping[str, Sequence[float]]) -> List[str]:
    """The test curves beyond loss and accuracy (one value per test pass)."""
    n = len(history.get("test_iter", ()))
    return [k for k, v in history.items() if k.startswith("test_") and k not in ("test_iter", "test_loss",
            "test_accuracy") and len(v) == n and all(isinstance(x, (int, float)) for x in v)]


def plot_weight_histograms(net: "Net", path: PathLike, *, bins: int = 60) -> Path:
    """One histogram of each layer's weights (its first blob), in layer order, with mean and std."""
    layers = [(layer.name, net.backend.to_numpy(layer.params[0].data).ravel()) for layer in net.layers if layer.params]
    if not layers:
        raise ValueError("the net has no learnable parameters to draw")
    fig = _figure(6, 1.6 * len(layers) + 0.4)
    axes = fig.subplots(len(layers), 1, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, layers):
        counts, edges = np.histogram(values, bins=bins)  # binned here: drawing 400k values is slow
        ax.stairs(counts, edges, fill=True, color="#4477AA")
        ax.set_title(f"{name} weights ({values.size}): mean {values.mean():.3g}, std {values.std():.3g}",
                     fontsize=8)
        ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.1, right=0.97, top=1 - 0.35 / fig.get_figheight(), bottom=0.25 / fig.get_figheight(),
                        hspace=0.7)
    fig.savefig(path)
    return Path(path)


def plot_confusion(matrix: np.ndarray, path: PathLike, *, class_names: Optional[Sequence[str]] = None,
                   title: str = "confusion matrix", unit: str = "records") -> Path:
    """Rows = true class, columns = predicted; colour is the row fraction, cells show counts (K <= 20) of
    ``unit`` (records; pixels for a segmentation)."""
    m = np.asarray(matrix, dtype=np.int64)
    k = len(m)
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.45 * k, 14)
    fig = _figure(size + 1, size)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, label=f"fraction of the true class's {unit}")
    ticks = np.arange(k)
    ax.set_xticks(ticks, names, rotation=90 if k > 6 else 0, fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_xlabel(f"predicted class ({unit})")
    ax.set_ylabel(f"true class ({unit})")
    if k <= 20:
        for (i, j), count in np.ndenumerate(m):
            ax.text(j, i, f"{count:,}", ha="center", va="center", fontsize=7,
                    color="white" if frac[i, j] > 0.5 else "black")
    accuracy = "pixel accuracy" if unit == "pixels" else "accuracy"
    ax.set_title(f"{title} ({int(m.sum()):,} {unit}, {accuracy} {np.trace(m) / max(m.sum(), 1):.4f})")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def training_pictures(net: "Net", history: Mapping[str, Sequence[float]], out: Path, name: str, *,
                      batch: int = 1) -> List[str]:
    """Curves, first-layer filters, the net diagram (blob shapes for ``batch``) and weight histograms."""
    from .draw import draw_net
    from .nn.net import first_weights

    files = [plot_curves(history, out / f"{name}_curves.png", title=name)]
    weights = first_weights(net)
    if weights is not None:
        files.append(plot_filters(weights, out / f"{name}_filters.png"))
    files.append(draw_net(net, out / f"{name}_net.png", title=name, batch=batch))
    if net.params:
        files.append(plot_weight_histograms(net, out / f"{name}_weights.png"))
    return [str(f) for f in files]
