"""Deconvolution (bilinear filler), Crop and pixel-wise SoftmaxWithLoss against hand values, loops and finite differences."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import pytest
from grad_helpers import numeric_grad

from feedstock.backend import NUMPY
from feedstock.trainer.nn.conv import Convolution
from feedstock.trainer.seg.layers import Crop, Deconvolution, PixelSoftmaxWithLoss, bilinear_filler


def _layer(cls: type, spec: Dict[str, Any], in_shape: tuple, seed: int = 0) -> Any:
    layer = cls(spec)
    layer.out = layer.setup(in_shape, NUMPY, np.random.default_rng(seed), np.float64)
    return layer


# -- bilinear filler ---------------------------------------------------------------------------------------
def test_bilinear_filler_hand_values() -> None:
    k4 = np.array([0.25, 0.75, 0.75, 0.25])  # f=2, c=3/4
    np.testing.assert_allclose(bilinear_filler((2, 1, 4, 4)), np.broadcast_to(np.outer(k4, k4), (2, 1, 4, 4)))
    k3 = np.array([0.5, 1.0, 0.5])  # f=2, c=1/2
    np.testing.assert_allclose(bilinear_filler((1, 1, 3, 3))[0, 0], np.outer(k3, k3))
    k6 = np.array([1, 3, 5, 5, 3, 1]) / 6.0  # f=3, c=5/6 (factor 3)
    np.testing.assert_allclose(bilinear_filler((1, 2, 6, 6))[0, 1], np.outer(k6, k6), rtol=1e-6)
    with pytest.raises(ValueError, match="square"):
        bilinear_filler((1, 1, 4, 3))


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_bilinear_deconv_upsamples_constant_and_ramp_exactly_inside(factor: int) -> None:
    k, pad = 2 * factor - factor % 2, int(np.ceil((factor - 1) / 2))
    spec = {"num_output": 2, "group": 2, "kernel_size": k, "stride": factor, "pad": pad,
            "bias_term": False, "weight_filler": {"type": "bilinear"}}
    h, w = 6, 7
    layer = _layer(Deconvolution, spec, (2, h, w))
    assert layer.out == (2, factor * h, factor * w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    x = np.stack([np.full((h, w), 3.5), 2.0 * yy - 0.5 * xx + 1.0])[None]
    y = layer.forward(x, train=False)
    # Output pixel v samples input coordinate (v - centre) / factor, centre = (k - 1) / 2 - pad.
    centre = (k - 1) / 2.0 - pad
    vy, vx = np.mgrid[0:factor * h, 0:factor * w].astype(np.float64)
    ramp = 2.0 * (vy - centre) / factor - 0.5 * (vx - centre) / factor + 1.0
    inner = (slice(factor, factor * (h - 1)), slice(factor, factor * (w - 1)))
    np.testing.assert_allclose(y[0, 0][inner], 3.5, rtol=1e-12)
    np.testing.assert_allclose(y[0, 1][inner], ramp[inner], rtol=1e-12, atol=1e-12)


# -- Deconvolution ------------------------------------------------------------------------------------------
def _deconv_loop(x: np.ndarray, wt: np.ndarray, b: np.ndarray, s: tuple, p: tuple, g: int, out_hw: tuple) -> np.ndarray:
    """Caffe's definition written as a scatter: each input pixel adds its kernel into the output."""
    n, c, h, w = x.shape
    og = wt.shape[1]
    kh, kw = wt.shape[2:]
    y = np.zeros((n, og * g, out_hw[0] + 2 * p[0], out_hw[1] + 2 * p[1]))
    for ci in range(c):
        grp = ci // (c // g)
        for o in range(og):
            for yi in range(h):
                for xi in range(w):
                    y[:, grp * og + o, s[0] * yi:s[0] * yi + kh, s[1] * xi:s[1] * xi + kw] += \
                        x[:, ci, yi, xi][:, None, None] * wt[ci, o]
    return y[:, :, p[0]:p[0] + out_hw[0], p[1]:p[1] + out_hw[1]] + b[None, :, None, None]


DECONV_SPECS = [
    {"num_output": 3, "kernel_size": 3, "stride": 2, "pad": 1},
    {"num_output": 4, "kernel_h": 4, "kernel_w": 3, "stride_h": 2, "stride_w": 3, "pad_h": 1, "pad_w": 0, "group": 2},
    {"num_output": 2, "kernel_size": 2, "stride": 1},
]


@pytest.mark.parametrize("spec", DECONV_SPECS)
def test_deconv_forward_matches_scatter_loop(spec: Dict[str, Any]) -> None:
    spec = dict(spec, weight_filler={"type": "gaussian", "std": 1.0}, bias_filler={"type": "gaussian"})
    layer = _layer(Deconvolution, spec, (4, 5, 4))
    x = np.random.default_rng(1).normal(size=(2, 4, 5, 4))
    wt, b = layer.params[0].data, layer.params[1].data
    expected = _deconv_loop(x, wt, b, layer.s, layer.p, layer.group, layer.out_hw)
    out = layer.forward(x, train=True)
    assert out.shape == (2,) + layer.out
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)


def test_deconv_is_the_adjoint_of_convolution() -> None:
    """<deconv(x; W), y> == <x, conv(y; W)>: Caffe's Deconvolution forward is Convolution's backward."""
    spec = {"kernel_size": 4, "stride": 2, "pad": 1, "group": 2, "bias_term": False,
            "weight_filler": {"type": "gaussian"}}
    deconv = _layer(Deconvolution, dict(spec, num_output=6), (4, 5, 6))
    conv = _layer(Convolution, dict(spec, num_output=4), (6,) + deconv.out[1:])
    conv.params[0].data[...] = deconv.params[0].data
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2, 4, 5, 6)), rng.normal(size=(2,) + deconv.out)
    assert conv.forward(y, train=False).shape == x.shape
    np.testing.assert_allclose(np.vdot(deconv.forward(x, train=False), y), np.vdot(x, conv.forward(y, train=False)),
                               rtol=1e-10)


@pytest.mark.parametrize("spec", DECONV_SPECS)
def test_deconv_gradients_match_finite_differences(spec: Dict[str, Any]) -> None:
    spec = dict(spec, weight_filler={"type": "gaussian"}, bias_filler={"type": "gaussian"})
    layer = _layer(Deconvolution, spec, (4, 3, 3))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 3, 3))
    r = rng.normal(size=(2,) + layer.out)

    def loss() -> float:
        return float((layer.forward(x, train=True) * r).sum())

    loss()
    dx = layer.backward(r, need_dx=True)
    grads = [p.grad.copy() for p in layer.params]
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-7)
    for p, g in zip(layer.params, grads):
        np.testing.assert_allclose(g, numeric_grad(loss, p.data), rtol=1e-5, atol=1e-7)


def test_deconv_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="group=3"):
        _layer(Deconvolution, {"num_output": 4, "kernel_size": 2, "group": 3}, (3, 4, 4))
    with pytest.raises(ValueError, match="unknown keys"):
        Deconvolution({"num_output": 4, "kernel_size": 2, "dilation": 2})
    with pytest.raises(ValueError, match="unknown keys"):
        _layer(Deconvolution, {"num_output": 1, "kernel_size": 2, "weight_filler": {"type": "bilinear", "std": 1}},
               (1, 2, 2))


# -- Crop ------------------------------------------------------------------------------------------------
def test_crop_forward_and_backward() -> None:
    layer = _layer(Crop, {"axis": 2, "offset": [1, 2], "shape": [3, 4]}, (2, 5, 7))
    assert layer.out == (2, 3, 4)
    x = np.arange(2 * 2 * 5 * 7, dtype=np.float64).reshape(2, 2, 5, 7)
    np.testing.assert_array_equal(layer.forward(x, train=False), x[:, :, 1:4, 2:6])
    dy = np.ones((2, 2, 3, 4))
    dx = layer.backward(dy)
    assert dx.sum() == dy.sum() and dx[:, :, 1:4, 2:6].sum() == dy.sum()
    with pytest.raises(ValueError, match="does not fit"):
        _layer(Crop, {"offset": 3, "shape": [3, 4]}, (2, 5, 7))
    with pytest.raises(ValueError, match="shape"):
        _layer(Crop, {"axis": 1, "shape": [3, 4]}, (2, 5, 7))


# -- pixel-wise SoftmaxWithLoss ---------------------------------------------------------------------------
def _case(seed: int = 4) -> tuple:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 3, 4, 5)) * 2
    labels = rng.integers(0, 3, size=(2, 1, 4, 5)).astype(np.float32)
    labels[0, 0, :2, :] = 255  # e.g. padding
    labels[1, 0, :, -1] = 255
    return logits, labels


def _loop_loss(logits: np.ndarray, labels: np.ndarray, ignore: int) -> tuple:
    total, count = 0.0, 0
    n, _, h, w = logits.shape
    for i in range(n):
        for y in range(h):
            for x in range(w):
                t = int(labels[i, 0, y, x])
                if t == ignore:
                    continue
                z = logits[i, :, y, x]
                total += -(z[t] - np.log(np.exp(z).sum()))
                count += 1
    return total, count


@pytest.mark.parametrize("norm", ["VALID", "FULL", "BATCH_SIZE", "NONE"])
def test_pixel_loss_value_excludes_ignored_pixels(norm: str) -> None:
    logits, labels = _case()
    head = PixelSoftmaxWithLoss({"ignore_label": 255, "normalization": norm})
    total, count = _loop_loss(logits, labels, 255)
    divisor = {"VALID": count, "FULL": labels.size, "BATCH_SIZE": 2, "NONE": 1}[norm]
    assert count == labels.size - 10 - 4  # two rows of sample 0, last column of sample 1
    np.testing.assert_allclose(float(head.forward(logits, labels)), total / divisor, rtol=1e-12)


def test_pixel_loss_gradient_finite_differences_and_zero_on_ignored() -> None:
    logits, labels = _case(5)
    head = PixelSoftmaxWithLoss({"ignore_label": 255, "loss_weight": 2.0})
    head.forward(logits, labels)
    grad = head.backward()
    np.testing.assert_allclose(grad, numeric_grad(lambda: float(head.forward(logits, labels)), logits),
                               rtol=1e-5, atol=1e-8)
    ignored = np.broadcast_to(labels == 255, grad.shape)
    assert np.all(grad[ignored] == 0) and np.any(grad[~ignored] != 0)
    before = float(head.forward(logits, labels))
    logits[ignored] += 100.0  # scores at ignored pixels do not matter
    assert float(head.forward(logits, labels)) == pytest.approx(before, rel=1e-12)


def test_pixel_loss_without_ignore_label_and_bad_labels() -> None:
    logits, labels = _case(6)
    labels[labels == 255] = 1
    total, count = _loop_loss(logits, labels, -1)
    assert count == labels.size
    np.testing.assert_allclose(float(PixelSoftmaxWithLoss().forward(logits, labels[:, 0])), total / count)
    labels[0, 0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"\[7\] outside \[0, 3\)"):
        PixelSoftmaxWithLoss({"ignore_label": 255}).forward(logits, labels)
    with pytest.raises(ValueError, match="label shape"):
        PixelSoftmaxWithLoss().forward(logits, labels[:, :, :3])
    with pytest.raises(ValueError, match="normalization"):
        PixelSoftmaxWithLoss({"normalization": "MEAN"})


def test_pixel_loss_all_ignored_is_zero_with_zero_gradient() -> None:
    logits, labels = _case(7)
    labels[...] = 255
    head = PixelSoftmaxWithLoss({"ignore_label": 255})
    assert float(head.forward(logits, labels)) == 0.0
    assert not head.backward().any()
