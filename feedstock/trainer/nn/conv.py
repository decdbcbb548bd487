"""Convolution (im2col + one GEMM) and Pooling (max, average) with Caffe's shapes and semantics."""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np
from numpy.typing import DTypeLike

from ...backend import Array, Backend, Rng
from .fillers import fill
from .layers import Layer, Shape


def _pair(spec: Mapping[str, Any], name: str, default: int) -> Tuple[int, int]:
    """Caffe's ``kernel_size`` / ``kernel_h`` + ``kernel_w`` style, as (h, w)."""
    base = name[:-5] if name.endswith("_size") else name
    h, w = spec.get(f"{base}_h"), spec.get(f"{base}_w")
    if h is not None or w is not None:
        return int(h if h is not None else default), int(w if w is not None else default)
    v = spec.get(name, default)
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1]))
    return int(v), int(v)


def _offset(x: Array, offset: Tuple[int, int], out_hw: Tuple[int, int], s: Tuple[int, int]) -> Array:
    """x[..., i::sh, j::sw] cut to Ho x Wo: the input pixel under kernel offset (i, j) of every window."""
    (i, j), (ho, wo) = offset, out_hw
    return x[..., i:i + s[0] * (ho - 1) + 1:s[0], j:j + s[1] * (wo - 1) + 1:s[1]]


def _im2col(xp: ModuleType, xt: Array, out_hw: Tuple[int, int], k: Tuple[int, int], s: Tuple[int, int]) -> Array:
    """Channel-major im2col of contiguous xt (C, N, Hp, Wp): a (C*kh*kw, N*Ho*Wo) copy.

    Rows of Wo output pixels stay contiguous in the gather, which copies faster
    than the pixel-major (N*Ho*Wo, C*kh*kw) layout with its runs of kw values.
    """
    c, n = xt.shape[:2]
    sc, sn, sh, sw = xt.strides
    shape = (c, k[0], k[1], n, out_hw[0], out_hw[1])
    strides = (sc, sh, sw, sn, sh * s[0], sw * s[1])
    view = xp.lib.stride_tricks.as_strided(xt, shape=shape, strides=strides)
    return view.reshape(c * k[0] * k[1], n * out_hw[0] * out_hw[1])


GEOMETRY_KEYS = ("num_output", "kernel_size", "kernel_h", "kernel_w", "stride", "stride_h", "stride_w",
                 "pad", "pad_h", "pad_w", "group", "bias_term", "weight_filler", "bias_filler")


class Geometry(NamedTuple):
    """A (de)convolution's input (C, H, W), num_output, kernel, stride, pad and group."""

    c: int
    h: int
    w: int
    n_out: int
    k: Tuple[int, int]
    s: Tuple[int, int]
    p: Tuple[int, int]
    group: int


def read_geometry(name: str, spec: Mapping[str, Any], in_shape: Shape) -> Geometry:
    """The geometry of a Convolution or Deconvolution spec on ``in_shape``, checked (errors name the layer)."""
    if len(in_shape) != 3:
        raise ValueError(f"{name}: input must be (C, H, W), got {in_shape}")
    c, h, w = in_shape
    k, s, p = _pair(spec, "kernel_size", 0), _pair(spec, "stride", 1), _pair(spec, "pad", 0)
    group, n_out = int(spec.get("group", 1)), int(spec.get("num_output", 0))
    if min(k) <= 0 or min(s) <= 0 or min(p) < 0 or n_out <= 0:
        raise ValueError(f"{name}: bad kernel={k} stride={s} pad={p} num_output={n_out}")
    if group <= 0 or c % group or n_out % group:
        raise ValueError(f"{name}: group={group} must divide channels {c} and num_output {n_out}")
    return Geometry(c, h, w, n_out, k, s, p, group)


class Convolution(Layer):
    """Caffe's Convolution: weight (num_output, C/group, kh, kw); output floor((H+2p-k)/s)+1."""

    type_name = "Convolution"
    allowed = GEOMETRY_KEYS

    def setup(self, in_shape: Shape, backend: Backend, rng: np.random.Generator, dtype: DTypeLike) -> Shape:
        super().setup(in_shape, backend, rng, dtype)
        g = read_geometry(self.name, self.spec, in_shape)
        c, h, w, n_out = g.c, g.h, g.w, g.n_out
        self.k, self.s, self.p, self.group = g.k, g.s, g.p, g.group
        ho, wo = ((d + 2 * p - k) // s + 1 for d, p, k, s in zip((h, w), self.p, self.k, self.s))
        self.out_hw = (ho, wo)
        if min(self.out_hw) <= 0:
            raise ValueError(f"{self.name}: kernel {self.k} larger than padded input {(h, w)}")
        self.bias = bool(self.spec.get("bias_term", True))
        wshape = (n_out, c // self.group) + self.k
        blobs = [("weight", fill(wshape, self.spec.get("weight_filler"), rng, self.dtype))]
        if self.bias:
            blobs.append(("bias", fill((n_out,), self.spec.get("bias_filler"), rng, self.dtype)))
        self._add_params(blobs)
        return (n_out,) + self.out_hw

    def forward(self, x: Array, *, train: bool, rng: Optional[Rng] = None) -> Array:
        xp = self.backend.xp
        n = x.shape[0]
        self.x_shape = x.shape
        (ph, pw), g = self.p, self.group
        xt = xp.pad(x.transpose(1, 0, 2, 3), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        self.col = _im2col(xp, xt, self.out_hw, self.k, self.s)
        w = self.params[0].data
        y = w.reshape(g, w.shape[0] // g, -1) @ self.col.reshape(g, -1, self.col.shape[1])
        y = y.reshape((w.shape[0], n) + self.out_hw)  # (O, N, Ho, Wo)
        if self.bias:
            y += self.params[1].data[:, None, None, None]
        return xp.ascontiguousarray(y.transpose(1, 0, 2, 3))

    def backward(self, dy: Array, *, need_dx: bool = True) -> Optional[Array]:
        xp = self.backend.xp
        n, n_out = dy.shape[:2]
        g = self.group
        dyt = xp.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(g, n_out // g, -1)
        col = self.col.reshape(g, -1, self.col.shape[1])
        self.params[0].grad[...] = (dyt @ col.transpose(0, 2, 1)).reshape(self.params[0].grad.shape)
        if self.bias:
            self.params[1].grad[...] = dyt.reshape(n_out, -1).sum(axis=1)
        if not need_dx:
            return None
        wmat = self.params[0].data.reshape(g, n_out // g, -1)
        c, h, w = self.x_shape[1:]
        ph, pw = self.p
        # col2im in (C, H, W, N) order: every strided add then moves runs of Wo*N values, not Wo.
        dy_hwn = xp.ascontiguousarray(dy.transpose(1, 2, 3, 0)).reshape(g, n_out // g, -1)
        dcol = (wmat.transpose(0, 2, 1) @ dy_hwn).reshape((c,) + self.k + self.out_hw + (n,))
        dxt = xp.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=dy.dtype)
        for i in range(self.k[0]):
            for j in range(self.k[1]):
                view = _offset(dxt.transpose(0, 3, 1, 2), (i, j), self.out_hw, self.s)
                view[...] += dcol[:, i, j].transpose(0, 3, 1, 2)
        return xp.ascontiguousarray(dxt[:, ph:ph + h, pw:pw + w].transpose(3, 0, 1, 2))


def pooled_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe's pooled extent: ceil((size + 2p - k) / s) + 1, minus one when the last window starts in the pad."""
    if pad >= kernel:
        raise ValueError(f"pad={pad} must be smaller than kernel={kernel}")
    if size + 2 * pad < kernel:
        raise ValueError(f"kernel={kernel} larger than padded input {size}+2*{pad}")
    out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class Pooling(Layer):
    """Caffe's MAX (first maximum wins) and AVE (divisor counts padding up to H+p) pooling."""

    type_name = "Pooling"
    allowed = ("pool", "kernel_size", "kernel_h", "kernel_w", "stride", "stride_h", "stride_w",
               "pad", "pad_h", "pad_w")

    def setup(self, in_shape: Shape, backend: Backend, rng: np.random.Generator, dtype: DTypeLike) -> Shape:
        super().setup(in_shape, backend, rng, dtype)
        self.mode = str(self.spec.get("pool", "MAX")).upper()
        if self.mode not in ("MAX", "AVE"):
            raise ValueError(f"{self.name}: pool={self.mode!r} must be MAX or AVE")
        if len(in_shape) != 3:
            raise ValueError(f"{self.name}: input must be (C, H, W), got {in_shape}")
        self.k = _pair(self.spec, "kernel_size", 0)
        self.s = _pair(self.spec, "stride", 1)
        self.p = _pair(self.spec, "pad", 0)
        if min(self.k) <= 0 or min(self.s) <= 0 or min(self.p) < 0:
            raise ValueError(f"{self.name}: bad kernel={self.k} stride={self.s} pad={self.p}")
        self.in_hw = tuple(in_shape[1:])
        ho, wo = (pooled_size(d, k, s, p) for d, k, s, p in zip(self.in_hw, self.k, self.s, self.p))
        self.out_hw = (ho, wo)
        # The padded canvas covers every window, including ones that run past H + p.
        self.canvas = tuple(max(d + 2 * p, (o - 1) * s + k)
                            for d, p, o, s, k in zip(self.in_hw, self.p, self.out_hw, self.s, self.k))
        self.divisor = self._ave_divisor() if self.mode == "AVE" else None
        return (in_shape[0],) + self.out_hw

    def _ave_divisor(self) -> Array:
        sizes = []
        for d, p, o, s, k in zip(self.in_hw, self.p, self.out_hw, self.s, self.k):
            start = np.arange(o) * s - p
            sizes.append(np.minimum(start + k, d + p) - start)
        return self.backend.xp.asarray(np.outer(*sizes), dtype=self.dtype)

    def _canvas(self, x: Array, fill_value: float) -> Array:
        if tuple(x.shape[2:]) == self.canvas:  # no pad and no overhang: pool x in place
            return x
        xp = self.backend.xp
        n, c, h, w = x.shape
        out = xp.full((n, c) + self.canvas, fill_value, dtype=x.dtype)
        out[:, :, self.p[0]:self.p[0] + h, self.p[1]:self.p[1] + w] = x
        return out

    def _offsets(self) -> List[Tuple[int, int]]:
        return [(i, j) for i in range(self.k[0]) for j in range(self.k[1])]

    def forward(self, x: Array, *, train: bool, rng: Optional[Rng] = None) -> Array:
        xp = self.backend.xp
        self.x_shape = x.shape
        canvas = self._canvas(x, 0.0 if self.mode == "AVE" else -np.inf)
        views = [_offset(canvas, o, self.out_hw, self.s) for o in self._offsets()]
        if self.mode == "AVE":
            total = views[0].copy()
            for v in views[1:]:
                total += v
            return total / self.divisor
        best = views[0].copy()
        for v in views[1:]:
            xp.maximum(best, v, out=best)
        self.canvas_in, self.best = canvas, best
        return best

    def backward(self, dy: Array, *, need_dx: bool = True) -> Optional[Array]:
        if not need_dx:
            return None
        xp = self.backend.xp
        n, c, h, w = self.x_shape
        dx = xp.zeros((n, c) + self.canvas, dtype=dy.dtype)
        if self.mode == "AVE":
            share = dy / self.divisor
            for o in self._offsets():
                _offset(dx, o, self.out_hw, self.s)[...] += share
        else:
            # The gradient goes to the first offset holding the maximum (Caffe's strict '>' scan).
            taken = xp.zeros(dy.shape, dtype=bool)
            for o in self._offsets():
                hit = _offset(self.canvas_in, o, self.out_hw, self.s) == self.best
                hit &= ~taken
                taken |= hit
                _offset(dx, o, self.out_hw, self.s)[...] += dy * hit
        return dx[:, :, self.p[0]:self.p[0] + h, self.p[1]:self.p[1] + w]
