"""A feed-forward Net built from a list of Caffe-style layer specs (dicts), with its loss head."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import DTypeLike

from ...backend import NUMPY, Array, Backend, Rng
from ..checks import flattens_input, input_reshape
from ..metrics import ClassificationMeter, Meter, check_class_labels
from ..seg.layers import SEG_LAYER_TYPES
from .conv import Convolution, Pooling
from .layers import LAYER_TYPES, Layer, Param, SoftmaxWithLoss, count_correct

_BODY_TYPES = dict(LAYER_TYPES, Convolution=Convolution, Pooling=Pooling, **SEG_LAYER_TYPES)
_HEAD_TYPES = ("SoftmaxWithLoss", "Accuracy")


def build_layer(spec: Mapping[str, Any]) -> Layer:
    """One body layer from its spec, e.g. ``{"type": "Convolution", "num_output": 20, ...}``."""
    kind = spec.get("type")
    if kind not in _BODY_TYPES:
        raise ValueError(f"layer type={kind!r} must be one of {sorted(_BODY_TYPES) + list(_HEAD_TYPES)}")
    return _BODY_TYPES[kind](spec)


class Net:
    """Sequential layers from ``specs`` ending in logits; SoftmaxWithLoss and Accuracy heads.

    ``specs`` may end with ``{"type": "SoftmaxWithLoss"}`` and ``{"type": "Accuracy",
    "top_k": k}`` as in a Caffe prototxt; both default when absent.
    """

    loss_type: Any = SoftmaxWithLoss  # the SoftmaxWithLoss head; SegNet's is pixel-wise
    output_rank = 1  # rank of the last layer's per-sample output: (num_classes,)
    # The task hooks the loop, the report and predict call (a SegNet overrides all four):
    # ``task`` names the metrics, ``check_labels`` / ``loss_labels`` / ``meter`` below.
    task = "classification"

    def __init__(self, specs: Sequence[Mapping[str, Any]], input_shape: Sequence[int], *,
                 backend: Backend = NUMPY, dtype: DTypeLike = np.float32, seed: int = 0) -> None:
        self.backend, self.dtype = backend, np.dtype(dtype)
        self.input_shape = tuple(int(d) for d in input_shape)
        body = [s for s in specs if s.get("type") not in _HEAD_TYPES]
        heads = {s["type"]: s for s in specs if s.get("type") in _HEAD_TYPES}
        self.loss = self.loss_type(heads.get("SoftmaxWithLoss"))
        self.top_k = int(heads.get("Accuracy", {}).get("top_k", 1))
        rng = np.random.default_rng(seed)  # fillers draw in layer order, as Caffe's do
        self.layers: List[Layer] = []
        self.shapes: List[Tuple[int, ...]] = []  # each layer's per-sample top shape (the net diagram)
        shape = self.input_shape
        counts: Dict[str, int] = {}
        for spec in body:
            spec = dict(spec)
            if "name" not in spec:
                counts[spec["type"]] = counts.get(spec["type"], 0) + 1
                spec["name"] = f"{spec['type'].lower()}{counts[spec['type']]}"
            layer = build_layer(spec)
            shape = layer.setup(shape, backend, rng, self.dtype)
            self.layers.append(layer)
            self.shapes.append(tuple(shape))
        if len(shape) != self.output_rank:
            want = "(num_classes,)" if self.output_rank == 1 else "(num_classes, H, W)"
            raise ValueError(f"the last layer must give {want}, got {shape}")
        self.num_classes = shape[0]
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names {names}: give layers unique names")

    @property
    def params(self) -> List[Param]:
        return [p for layer in self.layers for p in layer.params]

    def forward(self, x: Array, *, train: bool = False, rng: Optional[Rng] = None) -> Array:
        """Logits of a batch x (N, *input_shape)."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"batch shape {tuple(x.shape)} does not match input {self.input_shape}")
        for layer in self.layers:
            x = layer.forward(x, train=train, rng=rng)
        return x

    def backward(self, dlogits: Array) -> None:
        """Fill every param's grad from dL/dlogits (no gradient w.r.t. the data)."""
        d = dlogits
        for i in range(len(self.layers) - 1, -1, -1):
            d = self.layers[i].backward(d, need_dx=i > 0)

    def forward_backward(self, x: Array, labels: Array, *, rng: Optional[Rng] = None) -> Tuple[Array, Array]:
        """One training pass: returns (loss, number correct) as device scalars; grads filled."""
        logits = self.forward(x, train=True, rng=rng)
        loss = self.loss.forward(logits, labels)
        self.backward(self.loss.backward())
        return loss, count_correct(logits, labels, self.top_k)

    def input_reshape(self, shape: Sequence[int], where: str) -> Optional[Tuple[int, ...]]:
        """None when records of ``shape`` go in as they are; the shape to view them as when Caffe's
        InnerProduct would flatten them ((93, 1, 1) for (93,)); ValueError naming ``where`` otherwise."""
        return input_reshape(shape, self.input_shape, flattens_input([layer.spec for layer in self.layers]), where)

    def check_labels(self, labels: np.ndarray, where: str) -> None:
        """Host labels of one batch, checked before they reach the device; ValueError naming ``where``."""
        check_class_labels(labels, self.num_classes, where)

    def loss_labels(self, labels: Array) -> Array:
        """Device labels in the layout the loss takes: (N,) class indices for a classifier."""
        return labels.reshape(labels.shape[0])

    def meter(self) -> Meter:
        """A fresh accumulator of this net's evaluation metrics (loss, accuracy, log-loss, confusion)."""
        return ClassificationMeter(self.num_classes, self.top_k)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Host copies of every param, by name."""
        return {p.name: self.backend.to_numpy(p.data).copy() for p in self.params}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy params in by name; names and shapes must match exactly."""
        params = {p.name: p for p in self.params}
        if set(state) != set(params):
            raise ValueError(f"state names {sorted(state)} do not match net params {sorted(params)}")
        for name, value in state.items():
            if tuple(value.shape) != tuple(params[name].data.shape):
                raise ValueError(f"{name}: shape {value.shape} != {params[name].data.shape}")
            params[name].data[...] = self.backend.asarray(value, dtype=self.dtype)


def first_weights(net: Net) -> Optional[np.ndarray]:
    """The first layer's weight as a host array (for filter pictures), or None."""
    for layer in net.layers:
        if layer.params:
            return net.backend.to_numpy(layer.params[0].data)
    return None
