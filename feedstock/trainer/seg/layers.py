"""Segmentation layers with Caffe's semantics: Deconvolution (bilinear filler), Crop, pixel-wise SoftmaxWithLoss."""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
from numpy.typing import DTypeLike

from ...backend import Array, Backend, Rng, array_module
from ..nn.conv import GEOMETRY_KEYS, _im2col, _offset, read_geometry
from ..nn.fillers import fill
from ..nn.layers import Layer, Shape

NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")


def bilinear_filler(shape: Tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """Caffe's BilinearFiller: every (K, K) kernel of a 4-D blob is the same bilinear interpolation kernel.

    ``f = ceil(K / 2)``, ``c = (K - 1) / (2 f)``, ``w(x, y) = (1 - |x/f - c|) (1 - |y/f - c|)``.
    With ``group == num_output == channels`` and ``kernel 2s - s % 2``, stride s, pad ceil((s-1)/2),
    a Deconvolution with it upsamples each channel bilinearly by s.
    """
    if len(shape) != 4 or shape[2] != shape[3]:
        raise ValueError(f"bilinear filler needs a 4-D blob with square kernels, got shape {shape}")
    k = shape[3]
    f = math.ceil(k / 2.0)
    c = (k - 1) / (2.0 * f)
    ramp = 1.0 - np.abs(np.arange(k) / f - c)
    return np.broadcast_to(np.outer(ramp, ramp), shape).astype(dtype)


def fill_weights(shape: Tuple[int, ...], spec: Optional[Mapping[str, Any]], rng: np.random.Generator,
                 dtype: DTypeLike) -> np.ndarray:
    """``fillers.fill`` plus Caffe's ``bilinear`` (which takes no other keys)."""
    if spec is not None and spec.get("type") == "bilinear":
        if set(spec) - {"type"}:
            raise ValueError(f"filler 'bilinear' got unknown keys {sorted(set(spec) - {'type'})}")
        return bilinear_filler(shape, dtype)
    return fill(shape, spec, rng, dtype)


class Deconvolution(Layer):
    """Caffe's Deconvolution: the backward pass of a Convolution used as a forward pass.

    Weight (C_in, num_output/group, kh, kw); output ``s * (H - 1) + k - 2p`` per axis.
    forward = col2im(W^T x) + b, backward = im2col(dy) against x (weights) and W (data).
    """

    type_name = "Deconvolution"
    allowed = GEOMETRY_KEYS

    def setup(self, in_shape: Shape, backend: Backend, rng: np.random.Generator, dtype: DTypeLike) -> Shape:
        super().setup(in_shape, backend, rng, dtype)
        g = read_geometry(self.name, self.spec, in_shape)
        c, h, w, n_out = g.c, g.h, g.w, g.n_out
        self.k, self.s, self.p, self.group = g.k, g.s, g.p, g.group
        self.in_hw = (h, w)
        self.out_hw = tuple(s * (d - 1) + k - 2 * p for d, s, k, p in zip((h, w), self.s, self.k, self.p))
        if min(self.out_hw) <= 0:
            raise ValueError(f"{self.name}: pad {self.p} leaves no output for input {(h, w)}")
        self.n_out = n_out
        self.bias = bool(self.spec.get("bias_term", True))
        wshape = (c, n_out // self.group) + self.k
        blobs = [("weight", fill_weights(wshape, self.spec.get("weight_filler"), rng, self.dtype))]
        if self.bias:
            blobs.append(("bias", fill((n_out,), self.spec.get("bias_filler"), rng, self.dtype)))
        self._add_params(blobs)
        return (n_out,) + self.out_hw

    def _wmat(self) -> Array:
        """The weight as (group, C/group, num_output/group * kh * kw)."""
        w = self.params[0].data
        return w.reshape(self.group, w.shape[0] // self.group, -1)

    def forward(self, x: Array, *, train: bool, rng: Optional[Rng] = None) -> Array:
        xp = self.backend.xp
        n, c = x.shape[:2]
        g, (ph, pw), (ho, wo) = self.group, self.p, self.out_hw
        self.x_cm = xp.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(g, c // g, -1)  # (g, C/g, N*H*W)
        col = self._wmat().transpose(0, 2, 1) @ self.x_cm  # (g, O/g*kh*kw, N*H*W)
        col = col.reshape((self.n_out,) + self.k + (n,) + self.in_hw)
        # col2im: kernel tap (i, j) of input pixel (y, x) lands on padded output (s*y + i, s*x + j).
        yt = xp.zeros((self.n_out, n, ho + 2 * ph, wo + 2 * pw), dtype=x.dtype)
        for i in range(self.k[0]):
            for j in range(self.k[1]):
                _offset(yt, (i, j), self.in_hw, self.s)[...] += col[:, i, j]
        y = yt[:, :, ph:ph + ho, pw:pw + wo]
        if self.bias:
            y = y + self.params[1].data[:, None, None, None]
        return xp.ascontiguousarray(y.transpose(1, 0, 2, 3))

    def backward(self, dy: Array, *, need_dx: bool = True) -> Optional[Array]:
        xp = self.backend.xp
        n = dy.shape[0]
        g, (ph, pw) = self.group, self.p
        dyt = xp.pad(dy.transpose(1, 0, 2, 3), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        col = _im2col(xp, xp.ascontiguousarray(dyt), self.in_hw, self.k, self.s)  # (O*kh*kw, N*H*W)
        col = col.reshape(g, -1, col.shape[1])
        dw = self.x_cm @ col.transpose(0, 2, 1)  # (g, C/g, O/g*kh*kw)
        self.params[0].grad[...] = dw.reshape(self.params[0].grad.shape)
        if self.bias:
            self.params[1].grad[...] = dy.sum(axis=(0, 2, 3))
        if not need_dx:
            return None
        dx = self._wmat() @ col  # (g, C/g, N*H*W): the forward convolution of dy
        c = self.params[0].data.shape[0]
        return xp.ascontiguousarray(dx.reshape((c, n) + self.in_hw).transpose(1, 0, 2, 3))


class Crop(Layer):
    """Caffe's Crop with the reference blob's trailing dims given as ``shape`` (this net is sequential).

    Axes from ``axis`` (of N, C, H, W; default 2) are cut to ``shape`` starting at ``offset``
    (one value for all cropped axes or one per axis, default 0), as FCN aligns its upsampled scores.
    """

    type_name = "Crop"
    allowed = ("axis", "offset", "shape")

    def setup(self, in_shape: Shape, backend: Backend, rng: np.random.Generator, dtype: DTypeLike) -> Shape:
        super().setup(in_shape, backend, rng, dtype)
        axis = int(self.spec.get("axis", 2))
        if not 1 <= axis <= len(in_shape):
            raise ValueError(f"{self.name}: axis={axis} must be in [1, {len(in_shape)}] for input {in_shape}")
        target = tuple(int(d) for d in self.spec.get("shape", ()))
        n_axes = len(in_shape) + 1 - axis
        if len(target) != n_axes:
            raise ValueError(f"{self.name}: shape={list(target)} must give {n_axes} dims from axis {axis}")
        offset = self.spec.get("offset", 0)
        offsets = [int(o) for o in (offset if isinstance(offset, (list, tuple)) else [offset])]
        if len(offsets) == 1:
            offsets *= n_axes
        if len(offsets) != n_axes:
            raise ValueError(f"{self.name}: offset={offset} must be one value or {n_axes} values")
        dims = in_shape[axis - 1:]
        if any(o < 0 or t <= 0 or o + t > d for o, t, d in zip(offsets, target, dims)):
            raise ValueError(f"{self.name}: crop {target} at offset {offsets} does not fit input dims {dims}")
        self.in_shape = tuple(in_shape)
        lead = (slice(None),) * axis
        self.index = lead + tuple(slice(o, o + t) for o, t in zip(offsets, target))
        return tuple(in_shape[:axis - 1]) + target

    def forward(self, x: Array, *, train: bool, rng: Optional[Rng] = None) -> Array:
        return self.backend.xp.ascontiguousarray(x[self.index])

    def backward(self, dy: Array, *, need_dx: bool = True) -> Optional[Array]:
        if not need_dx:
            return None
        dx = self.backend.xp.zeros((dy.shape[0],) + self.in_shape, dtype=dy.dtype)
        dx[self.index] = dy
        return dx


def pixel_labels(labels: Array, logits_shape: Tuple[int, ...]) -> Array:
    """Labels (N, 1, H, W) or (N, H, W) as int64 (N, H, W) matching logits (N, K, H, W)."""
    n, _, h, w = logits_shape
    if labels.ndim == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if tuple(labels.shape) != (n, h, w):
        raise ValueError(f"label shape {tuple(labels.shape)} must be ({n}, 1, {h}, {w}) or ({n}, {h}, {w})"
                         f" for scores {tuple(logits_shape)}")
    return labels.astype(np.int64, copy=False)


class PixelSoftmaxWithLoss:
    """Caffe's SoftmaxWithLoss over axis 1 of (N, K, H, W) scores: one cross-entropy per pixel.

    Pixels labelled ``ignore_label`` get no loss and no gradient. ``normalization`` as in Caffe's
    LossParameter: VALID (default) divides by the non-ignored pixels, FULL by all pixels,
    BATCH_SIZE by N, NONE by 1 (the divisor is at least 1, as Caffe's get_normalizer).
    """

    type_name = "SoftmaxWithLoss"
    allowed = ("type", "name", "loss_weight", "ignore_label", "normalization")

    def __init__(self, spec: Optional[Mapping[str, Any]] = None) -> None:
        spec = dict(spec or {})
        unknown = set(spec) - set(self.allowed)
        if unknown:
            raise ValueError(f"SoftmaxWithLoss got unknown keys {sorted(unknown)}")
        self.loss_weight = float(spec.get("loss_weight", 1.0))
        ignore = spec.get("ignore_label")
        self.ignore_label: Optional[int] = None if ignore is None else int(ignore)
        self.normalization = str(spec.get("normalization", "VALID")).upper()
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"SoftmaxWithLoss normalization={self.normalization!r} must be one of {NORMALIZATIONS}")

    def _normalizer(self, valid_count: Array, shape: Tuple[int, ...]) -> Array:
        n, _, h, w = shape
        count = {"FULL": n * h * w, "BATCH_SIZE": n, "NONE": 1}.get(self.normalization, valid_count)
        return max(1.0, float(count))

    def forward(self, logits: Array, labels: Array) -> Array:
        xp = array_module(logits)
        k = logits.shape[1]
        lab = pixel_labels(labels, logits.shape)
        valid = xp.ones(lab.shape, dtype=bool) if self.ignore_label is None else lab != self.ignore_label
        if bool(((lab < 0) | (lab >= k))[valid].any()):
            bad = sorted(set(int(v) for v in array_module(lab).unique(lab[valid]).tolist()) - set(range(k)))
            raise ValueError(f"label values {bad[:5]} outside [0, {k}) and not ignore_label={self.ignore_label}")
        safe = xp.where(valid, lab, 0)
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        self.prob = e / e.sum(axis=1, keepdims=True)
        picked = xp.take_along_axis(self.prob, safe[:, None], axis=1)[:, 0]
        nll = -xp.log(xp.maximum(picked, np.finfo(np.float32).tiny)) * valid
        self.safe, self.valid = safe, valid
        self.norm = self._normalizer(valid.sum(), logits.shape)
        return nll.sum() * (self.loss_weight / self.norm)

    def backward(self) -> Array:
        xp = array_module(self.prob)
        d = self.prob.copy()
        onehot = xp.arange(d.shape[1])[None, :, None, None] == self.safe[:, None]
        d -= onehot
        d *= self.valid[:, None]
        return d * (self.loss_weight / self.norm)


SEG_LAYER_TYPES: Dict[str, type] = {c.type_name: c for c in (Deconvolution, Crop)}
