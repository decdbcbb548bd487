"""Caffe's elementwise, fully-connected and loss layers on one ``xp`` code path."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
from numpy.typing import DTypeLike

from ...backend import NUMPY, Array, Backend, Rng, array_module
from .fillers import fill

Shape = Tuple[int, ...]


@dataclass
class Param:
    """A learnable blob: data, gradient and Caffe's per-blob lr_mult / decay_mult."""

    name: str
    data: Array
    grad: Array
    lr_mult: float = 1.0
    decay_mult: float = 1.0


def param_mults(spec: Mapping[str, Any], count: int) -> List[Tuple[float, float]]:
    """(lr_mult, decay_mult) per blob from Caffe-style ``param: [{lr_mult, decay_mult}, ...]``."""
    given = list(spec.get("param", ()))
    if len(given) > count:
        raise ValueError(f"layer {spec.get('name')!r}: {len(given)} param entries for {count} blobs")
    given += [{}] * (count - len(given))
    return [(float(p.get("lr_mult", 1.0)), float(p.get("decay_mult", 1.0))) for p in given]


class Layer:
    """Base: ``setup`` fixes shapes and creates params; ``forward``/``backward`` on batches."""

    type_name = "Layer"
    allowed: Tuple[str, ...] = ()

    def __init__(self, spec: Mapping[str, Any]) -> None:
        unknown = set(spec) - {"type", "name", "param"} - set(self.allowed)
        if unknown:
            raise ValueError(f"{self.type_name} layer got unknown keys {sorted(unknown)}")
        self.spec = dict(spec)
        self.name: str = str(spec.get("name", self.type_name.lower()))
        self.params: List[Param] = []
        self.backend: Backend = NUMPY
        self.dtype: DTypeLike = np.float32

    def setup(self, in_shape: Shape, backend: Backend, rng: np.random.Generator, dtype: DTypeLike) -> Shape:
        """Create params for per-sample input ``in_shape``; return the per-sample output shape."""
        self.backend, self.dtype = backend, np.dtype(dtype)
        return in_shape

    def _add_params(self, blobs: List[Tuple[str, np.ndarray]]) -> None:
        xp = self.backend.xp
        for (suffix, host), (lr, decay) in zip(blobs, param_mults(self.spec, len(blobs))):
            data = xp.asarray(host, dtype=self.dtype)
            self.params.append(Param(f"{self.name}/{suffix}", data, xp.zeros_like(data), lr, decay))

    def forward(self, x: Array, *, train: bool, rng: Optional[Rng] = None) -> Array:
        raise NotImplementedError

    def backward(self, dy: Array, *, need_dx: bool = True) -> Optional[Array]:
        """Accumulate nothing: param grads are overwritten; returns dL/dx when ``need_dx``."""
        raise NotImplementedError


class InnerProduct(Layer):
    """y = x W^T + b with x flattened from axis 1; W is (num_output, K) as in Caffe."""

    type_name = "InnerProduct"
    allowed = ("num_output", "bias_term", "weight_filler", "bias_filler")

    def setup(self, in_shape: Shape, backend: Backend, rng: np.random.Generator, dtype: DTypeLike) -> Shape:
        super().setup(in_shape, backend, rng, dtype)
        n_out = int(self.spec.get("num_output", 0))
        if n_out <= 0:
            raise ValueError(f"{self.name}: num_output={n_out} must be positive")
        k = int(np.prod(in_shape))
        self.bias = bool(self.spec.get("bias_term", True))
        blobs = [("weight", fill((n_out, k), self.spec.get("weight_filler"), rng, self.dtype))]
        if self.bias:
            blobs.append(("bias", fill((n_out,), self.spec.get("bias_filler"), rng, self.dtype)))
        self._add_params(blobs)
        return (n_out,)

    def forward(self, x: Array, *, train: bool, rng: Optional[Rng] = None) -> Array:
        self.x_shape = x.shape
        self.x2 = x.reshape(x.shape[0], -1)
        y = self.x2 @ self.params[0].data.T
        if self.bias:
            y += self.params[1].data
        return y

    def backward(self, dy: Array, *, need_dx: bool = True) -> Optional[Array]:
        self.params[0].grad[...] = dy.T @ self.x2
        if self.bias:
            self.params[1].grad[...] = dy.sum(axis=0)
        return (dy @ self.params[0].data).reshape(self.x_shape) if need_dx else None


class ReLU(Layer):
    """max(x, 0) + negative_slope * min(x, 0)."""

    type_name = "ReLU"
    allowed = ("negative_slope",)

    def forward(self, x: Array, *, train: bool, rng: Optional[Rng] = None) -> Array:
        self.slope = float(self.spec.get("negative_slope", 0.0))
        self.positive = x > 0
        y = x * self.positive
        if self.slope:
            y += self.slope * x * ~self.positive
        return y

    def backward(self, dy: Array, *, need_dx: bool = True) -> Optional[Array]:
        if not need_dx:
            return None
        dx = dy * self.positive
        if self.slope:
            dx += self.slope * dy * ~self.positive
        return dx


class Dropout(Layer):
    """Caffe's inverted dropout: keep with p = 1 - ratio and scale by 1/(1-ratio) while training."""

    type_name = "Dropout"
    allowed = ("dropout_ratio",)

    def setup(self, in_shape: Shape, backend: Backend, rng: np.random.Generator, dtype: DTypeLike) -> Shape:
        self.ratio = float(self.spec.get("dropout_ratio", 0.5))
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"{self.name}: dropout_ratio={self.ratio} must be in [0, 1)")
        return super().setup(in_shape, backend, rng, dtype)

    def forward(self, x: Array, *, train: bool, rng: Optional[Rng] = None) -> Array:
        if not train or self.ratio == 0.0:
            self.mask = None
            return x
        if rng is None:
            raise ValueError(f"{self.name}: training-mode dropout needs an rng")
        keep = rng.random(x.shape, dtype=np.float32) >= self.ratio
        self.mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.ratio))
        return x * self.mask

    def backward(self, dy: Array, *, need_dx: bool = True) -> Optional[Array]:
        if not need_dx:
            return None
        return dy if self.mask is None else dy * self.mask


class SoftmaxWithLoss:
    """Mean cross-entropy of softmax(logits); Caffe clamps probabilities at FLT_MIN before the log."""

    type_name = "SoftmaxWithLoss"

    def __init__(self, spec: Optional[Mapping[str, Any]] = None) -> None:
        spec = dict(spec or {})
        self.loss_weight = float(spec.get("loss_weight", 1.0))

    def forward(self, logits: Array, labels: Array) -> Array:
        xp = array_module(logits)
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        self.prob = e / e.sum(axis=1, keepdims=True)
        self.labels = labels
        n = logits.shape[0]
        picked = self.prob[xp.arange(n), labels]
        return -xp.log(xp.maximum(picked, np.finfo(np.float32).tiny)).sum() / n * self.loss_weight

    def backward(self) -> Array:
        xp = array_module(self.prob)
        n = self.prob.shape[0]
        d = self.prob.copy()
        d[xp.arange(n), self.labels] -= 1
        return d * (self.loss_weight / n)


def count_correct(scores: Array, labels: Array, top_k: int = 1) -> Array:
    """Caffe's Accuracy: correct when fewer than top_k classes score strictly higher (ties count)."""
    xp = array_module(scores)
    true_score = scores[xp.arange(scores.shape[0]), labels][:, None]
    better = (scores > true_score).sum(axis=1)
    return (better < top_k).sum()


LAYER_TYPES: Dict[str, type] = {c.type_name: c for c in (InnerProduct, ReLU, Dropout)}
