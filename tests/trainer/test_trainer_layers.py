"""Layers against naive Caffe loops, numeric gradients (float64), Caffe's pooled sizes and fillers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from grad_helpers import numeric_grad

from feedstock.backend import NUMPY
from feedstock.trainer.nn.conv import Convolution, Pooling, pooled_size
from feedstock.trainer.nn.fillers import fill
from feedstock.trainer.nn.layers import Dropout, InnerProduct, ReLU, SoftmaxWithLoss, count_correct
from feedstock.trainer.nn.net import Net


def make(layer_cls, spec, in_shape, seed=0):
    layer = layer_cls(spec)
    out = layer.setup(in_shape, NUMPY, np.random.default_rng(seed), np.float64)
    for p in layer.params:  # non-trivial biases so their gradients matter
        p.data[...] = np.random.default_rng(seed + 1).normal(size=p.data.shape)
    return layer, out


def check_gradients(layer, x, *, train=False, rng_seed=None):
    """Compare backward() with central differences of L = sum(forward(x) * R)."""
    def fwd():
        rng = None if rng_seed is None else np.random.default_rng(rng_seed)
        return layer.forward(x, train=train, rng=rng)

    r = np.random.default_rng(42).normal(size=fwd().shape)
    loss = lambda: float((fwd() * r).sum())  # noqa: E731
    fwd()
    dx = layer.backward(r, need_dx=True)
    analytic = [p.grad.copy() for p in layer.params]
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-7)
    for p, a in zip(layer.params, analytic):
        np.testing.assert_allclose(a, numeric_grad(loss, p.data), rtol=1e-5, atol=1e-7, err_msg=p.name)


def naive_conv(x, w, b, stride, pad, group=1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, o, ho, wo))
    og = o // group
    for oc in range(o):
        g = oc // og
        for i in range(ho):
            for j in range(wo):
                patch = xp_[:, g * cg:(g + 1) * cg, i * stride:i * stride + kh, j * stride:j * stride + kw]
                y[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3)) + b[oc]
    return y


def caffe_pool(x, k, s, p, mode):
    """A transcription of Caffe's PoolingLayer::Forward_cpu loops."""
    n, c, h, w = x.shape
    ph_, pw_ = pooled_size(h, k, s, p), pooled_size(w, k, s, p)
    y = np.zeros((n, c, ph_, pw_))
    for ph in range(ph_):
        for pw in range(pw_):
            hs, ws = ph * s - p, pw * s - p
            if mode == "MAX":
                he, we = min(hs + k, h), min(ws + k, w)
                hs, ws = max(hs, 0), max(ws, 0)
                y[:, :, ph, pw] = x[:, :, hs:he, ws:we].max(axis=(2, 3))
            else:
                he, we = min(hs + k, h + p), min(ws + k, w + p)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                y[:, :, ph, pw] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / size
    return y


@pytest.mark.parametrize("stride,pad,group", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 1, 1)])
def test_convolution_matches_naive_loops_and_gradients(stride, pad, group):
    x = np.random.default_rng(3).normal(size=(2, 4, 7, 6))
    spec = {"type": "Convolution", "num_output": 4, "kernel_size": 3, "stride": stride, "pad": pad, "group": group}
    layer, out = make(Convolution, spec, (4, 7, 6))
    y = layer.forward(x, train=True)
    w, b = layer.params[0].data, layer.params[1].data
    np.testing.assert_allclose(y, naive_conv(x, w, b, stride, pad, group), rtol=1e-12, atol=1e-12)
    assert y.shape[1:] == out
    check_gradients(layer, x)


def test_convolution_rectangular_kernel_and_no_bias():
    x = np.random.default_rng(4).normal(size=(2, 2, 6, 7))
    spec = {"type": "Convolution", "num_output": 3, "kernel_h": 2, "kernel_w": 3, "bias_term": False}
    layer, out = make(Convolution, spec, (2, 6, 7))
    assert out == (3, 5, 5) and len(layer.params) == 1
    check_gradients(layer, x)


@pytest.mark.parametrize("h,k,s,p,expected", [
    (24, 2, 2, 0, 12),   # LeNet pool1
    (6, 3, 2, 0, 3),     # ceil rounding: floor would give 2
    (7, 3, 2, 1, 4),     # ceil((7+2-3)/2)+1 = 4, last window starts at 5 < 8: kept
    (5, 2, 2, 1, 3),     # ceil(5/2)+1 = 4, last window starts at 6 >= 5+1: clipped to 3
    (13, 3, 2, 0, 6),    # AlexNet-style 3/2 pooling
    (4, 3, 2, 1, 3),     # ceil(3/2)+1 = 3; last window starts at 4 < 4+1: kept
    (3, 2, 2, 1, 2),     # ceil(3/2)+1 = 3; last window starts at 4 >= 3+1: clipped to 2
])
def test_pooled_size_matches_caffe_formula(h, k, s, p, expected):
    out = math.ceil((h + 2 * p - k) / s) + 1
    if p and (out - 1) * s >= h + p:
        out -= 1
    assert out == expected  # the hand-worked value agrees with the formula
    assert pooled_size(h, k, s, p) == expected


def test_pooled_size_rejects_pad_not_smaller_than_kernel():
    with pytest.raises(ValueError, match="pad=2"):
        pooled_size(8, 2, 2, 2)


@pytest.mark.parametrize("mode", ["MAX", "AVE"])
@pytest.mark.parametrize("h,w,k,s,p", [(8, 8, 2, 2, 0), (7, 6, 3, 2, 1), (5, 5, 2, 2, 1), (6, 9, 3, 2, 0)])
def test_pooling_matches_caffe_loops_and_gradients(mode, h, w, k, s, p):
    x = np.random.default_rng(5).normal(size=(2, 3, h, w))
    layer, out = make(Pooling, {"type": "Pooling", "pool": mode, "kernel_size": k, "stride": s, "pad": p}, (3, h, w))
    y = layer.forward(x, train=False)
    assert y.shape[1:] == out
    np.testing.assert_allclose(y, caffe_pool(x, k, s, p, mode), rtol=1e-12)
    check_gradients(layer, x)


def test_max_pooling_routes_ties_to_the_first_maximum_like_caffe():
    x = np.ones((1, 1, 2, 2))
    layer, _ = make(Pooling, {"type": "Pooling", "kernel_size": 2, "stride": 2}, (1, 2, 2))
    layer.forward(x, train=True)
    dx = layer.backward(np.array([[[[5.0]]]]))
    np.testing.assert_array_equal(dx, [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_inner_product_relu_gradients():
    x = np.random.default_rng(6).normal(size=(3, 2, 2, 3))
    layer, out = make(InnerProduct, {"type": "InnerProduct", "num_output": 5}, (2, 2, 3))
    assert out == (5,)
    np.testing.assert_allclose(layer.forward(x, train=False),
                               x.reshape(3, -1) @ layer.params[0].data.T + layer.params[1].data)
    check_gradients(layer, x)
    relu, _ = make(ReLU, {"type": "ReLU", "negative_slope": 0.1}, (7,))
    xr = np.random.default_rng(7).normal(size=(4, 7))
    np.testing.assert_allclose(relu.forward(xr, train=False), np.where(xr > 0, xr, 0.1 * xr))
    check_gradients(relu, xr)


def test_dropout_scales_kept_units_and_is_identity_in_test():
    layer, _ = make(Dropout, {"type": "Dropout", "dropout_ratio": 0.25}, (1000,))
    x = np.random.default_rng(8).normal(size=(4, 1000))
    np.testing.assert_array_equal(layer.forward(x, train=False), x)
    y = layer.forward(x, train=True, rng=np.random.default_rng(1))
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75)
    assert 0.70 < kept.mean() < 0.80
    check_gradients(layer, x, train=True, rng_seed=9)


def test_softmax_loss_value_gradient_and_accuracy():
    logits = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, -1.0]])
    labels = np.array([2, 0])
    loss = SoftmaxWithLoss()
    value = float(loss.forward(logits, labels))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert value == pytest.approx(-(np.log(p[0, 2]) + np.log(p[1, 0])) / 2)
    x = logits.copy()
    num = numeric_grad(lambda: float(SoftmaxWithLoss().forward(x, labels)), x)
    loss.forward(logits, labels)
    np.testing.assert_allclose(loss.backward(), num, rtol=1e-6, atol=1e-9)
    # Caffe counts a tie with the true class as correct (no class scores strictly higher).
    assert int(count_correct(logits, labels)) == 2
    assert int(count_correct(logits, np.array([1, 2]))) == 0
    assert int(count_correct(logits, np.array([1, 2]), top_k=2)) == 1


def test_fillers_follow_caffe_definitions():
    rng = np.random.default_rng(0)
    x = fill((200, 50, 3, 3), {"type": "xavier"}, rng)
    bound = np.sqrt(3.0 / (50 * 9))
    assert np.abs(x).max() <= bound and np.abs(x).max() > 0.95 * bound
    g = fill((400, 500), {"type": "gaussian", "std": 0.01}, rng)
    assert g.std() == pytest.approx(0.01, rel=0.02) and g.dtype == np.float32
    np.testing.assert_array_equal(fill((3,), {"type": "constant", "value": 0.2}, rng), np.float32(0.2))
    with pytest.raises(ValueError, match="filler type"):
        fill((3,), {"type": "bogus"}, rng)
    with pytest.raises(ValueError, match="unknown keys"):
        fill((3,), {"type": "gaussian", "sdt": 1}, rng)


def test_net_gradients_end_to_end_float64():
    specs = [
        {"type": "Convolution", "num_output": 3, "kernel_size": 3, "pad": 1,
         "weight_filler": {"type": "gaussian", "std": 0.5}},
        {"type": "Pooling", "pool": "MAX", "kernel_size": 2, "stride": 2},
        {"type": "ReLU"},
        {"type": "InnerProduct", "num_output": 4, "weight_filler": {"type": "xavier"}},
    ]
    net = Net(specs, (2, 6, 6), dtype=np.float64, seed=1)
    x = np.random.default_rng(2).normal(size=(3, 2, 6, 6))
    labels = np.array([0, 3, 1])
    net.forward_backward(x, labels)
    for p in net.params:
        analytic = p.grad.copy()
        num = numeric_grad(lambda: float(net.loss.forward(net.forward(x), labels)), p.data)
        np.testing.assert_allclose(analytic, num, rtol=1e-5, atol=1e-8, err_msg=p.name)


def test_layer_spec_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown keys"):
        Net([{"type": "InnerProduct", "num_output": 2, "kernel": 3}], (4,))
    with pytest.raises(ValueError, match="layer type"):
        Net([{"type": "LSTM"}], (4,))
    with pytest.raises(ValueError, match="group=3"):
        Net([{"type": "Convolution", "num_output": 4, "kernel_size": 1, "group": 3},
             {"type": "InnerProduct", "num_output": 2}], (4, 3, 3))
