"""The network as a picture, as Caffe's draw_net draws it: a box per layer (type, name, top shape), in order.

Drawn with matplotlib's Agg canvas (no graphviz): the input blob, then each body
layer top to bottom, then the loss head, joined by arrows; colours follow
draw_net's (Convolution red, Pooling orange, InnerProduct purple, others blue).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, NamedTuple, Tuple, Union

from .nn.conv import _pair

if TYPE_CHECKING:
    from .nn.layers import Layer
    from .nn.net import Net

_COLOURS = {"Convolution": "#FF5050", "Deconvolution": "#FF5050", "Pooling": "#FF9900",
            "InnerProduct": "#CC33FF", "data": "#E0E0E0"}
_DEFAULT_COLOUR = "#6495ED"


class Box(NamedTuple):
    """One box of the diagram: its title (type and name), a detail line and the top blob's shape."""

    kind: str
    name: str
    detail: str
    top: Tuple[int, ...]


def _detail(layer: Layer) -> str:
    """Caffe draw_net's parameter line: kernel/stride/pad for conv and pool, outputs for InnerProduct."""
    spec = layer.spec
    kind = layer.type_name
    if kind in ("Convolution", "Deconvolution", "Pooling"):
        k, s, p = _pair(spec, "kernel_size", 0), _pair(spec, "stride", 1), _pair(spec, "pad", 0)
        pool = f"{str(spec.get('pool', 'MAX')).upper()} " if kind == "Pooling" else ""
        return f"{pool}kernel {k[0]}x{k[1]}, stride {s[0]}, pad {p[0]}"
    if kind == "InnerProduct":
        return f"num_output {spec.get('num_output')}"
    if kind == "Dropout":
        return f"ratio {spec.get('dropout_ratio', 0.5)}"
    return ""


def net_boxes(net: "Net", batch: int = 1) -> List[Box]:
    """The diagram's boxes of ``net`` for a batch of ``batch``: input, body layers, loss."""
    boxes = [Box("Input", "data", "", (batch,) + tuple(net.input_shape))]
    for layer, shape in zip(net.layers, net.shapes):
        boxes.append(Box(layer.type_name, layer.name, _detail(layer), (batch,) + tuple(shape)))
    boxes.append(Box(type(net.loss).__name__, "loss", "", ()))
    return boxes


def _shape_text(shape: Tuple[int, ...]) -> str:
    return " x ".join(str(d) for d in shape) if shape else "scalar"


def draw_net(net: "Net", path: Union[str, Path], *, title: str = "", batch: int = 1) -> Path:
    """Write the diagram of ``net`` to ``path`` (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    boxes = net_boxes(net, batch)
    step = 1.0
    fig = Figure(figsize=(4.6, 0.75 * len(boxes) + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 4)
    ax.set_ylim(-len(boxes) * step, 0.6 if title else 0.2)
    ax.set_axis_off()
    if title:
        ax.text(2, 0.3, title, ha="center", va="center", fontsize=11, weight="bold")
    for i, box in enumerate(boxes):
        y = -i * step - 0.5
        colour = _COLOURS.get(box.kind if box.kind != "Input" else "data", _DEFAULT_COLOUR)
        ax.add_patch(FancyBboxPatch((0.4, y - 0.3), 3.2, 0.6, boxstyle="round,pad=0.02", fc=colour, ec="black", lw=0.8))
        head = f"{box.kind}  {box.name}" if box.kind != "Input" else "data (input)"
        ax.text(2, y + 0.12, head, ha="center", va="center", fontsize=8.5, weight="bold")
        sub = ", ".join(t for t in (box.detail, f"top {_shape_text(box.top)}" if box.top else "") if t)
        ax.text(2, y - 0.14, sub, ha="center", va="center", fontsize=7.5)
        if i:
            ax.annotate("", xy=(2, y + 0.31), xytext=(2, y + step - 0.31),
                        arrowprops=dict(arrowstyle="->", lw=0.9))
    fig.savefig(path)
    return Path(path)
