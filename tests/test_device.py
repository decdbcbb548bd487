"""DeviceFeeder: conversion on the way in, timing report, pinned ranges; the cupy path where a GPU exists."""
from __future__ import annotations

import mmap
import time

import numpy as np
import pytest

from feedstock.backend import NUMPY, get_backend, probe_cupy
from feedstock.device import DeviceFeeder, page_ranges


def host_batches(n, rows=4, *, delay=0.0, buffer=None):
    """Batches written into one reused buffer, as a loader slot would be."""
    buf = np.empty((rows, 1, 2, 2), np.uint8) if buffer is None else buffer
    for k in range(n):
        if delay:
            time.sleep(delay)
        buf[...] = np.arange(buf.size, dtype=np.uint8).reshape(buf.shape) + k
        yield {"data": buf, "label": np.full(rows, k, dtype=np.int32)}


def test_numpy_feeder_converts_like_caffe_and_owns_its_output():
    feeder = DeviceFeeder(NUMPY, scale=0.5, mean=10.0)
    got = []
    for batch in feeder.feed(host_batches(3)):
        got.append((batch["data"].copy(), batch["label"]))
    for k, (data, label) in enumerate(got):
        raw = np.arange(16, dtype=np.float32).reshape(4, 1, 2, 2) + k
        np.testing.assert_array_equal(data, (raw - 10.0) * 0.5)  # (x - mean) * scale
        assert data.dtype == np.float32 and label.dtype == np.int64
        np.testing.assert_array_equal(label, k)
    (stats,) = feeder.stats
    assert (stats.steps, stats.samples, stats.epoch) == (3, 12, 0)


def test_log1p_applies_before_scale():
    feeder = DeviceFeeder(NUMPY, log1p=True, scale=2.0)
    batch = next(feeder.feed([{"data": np.array([[0.0, np.e - 1]], dtype=np.float32)}]))
    np.testing.assert_allclose(batch["data"], [[0.0, 2.0]], rtol=1e-6)


def test_wait_is_charged_to_data_and_step_to_compute():
    delay = 0.1  # the other side takes ~0 s: 0.1 s a step keeps the fractions clear on a busy machine
    slow_data = DeviceFeeder(NUMPY)
    for _ in slow_data.feed(host_batches(5, delay=delay)):
        pass
    s = slow_data.stats[0]
    assert s.wait_s >= 4 * delay and s.startup_s >= delay  # the first batch counts as start-up
    assert s.wait_fraction > 0.5
    slow_step = DeviceFeeder(NUMPY)
    for _ in slow_step.feed(host_batches(5)):
        time.sleep(delay)
    s = slow_step.stats[0]
    assert s.compute_s >= 5 * delay and s.step_time_s >= delay and s.wait_fraction < 0.5
    assert "data wait" in s.line()


def test_paused_time_is_not_charged_and_early_close_still_reports():
    feeder = DeviceFeeder(NUMPY)
    batches = feeder.feed(host_batches(10))
    next(batches)
    with feeder.paused():
        time.sleep(2.0)
    next(batches)
    batches.close()
    (stats,) = feeder.stats
    assert stats.steps == 2 and stats.compute_s < 1.5  # the 2 s pause is not in it (a wide margin for a busy machine)


def test_page_ranges_merge_fields_that_share_pages():
    page = mmap.PAGESIZE
    buf = mmap.mmap(-1, 4 * page)
    try:
        whole = np.frombuffer(buf, dtype=np.uint8)
        a, b = whole[:100], whole[200:page + 10]  # share page 0
        c = whole[3 * page + 5:3 * page + 50]  # alone on page 3
        base = whole.ctypes.data
        assert base % page == 0
        assert page_ranges([c, b, a]) == [(base, 2 * page), (base + 3 * page, page)]
        assert page_ranges([whole[:0]]) == []
        del whole, a, b, c
    finally:
        buf.close()


def test_backend_selection_without_gpu():
    assert get_backend("numpy") is NUMPY
    with pytest.raises(ValueError, match="backend='tpu'"):
        get_backend("tpu")
    if probe_cupy() is None:
        assert get_backend() is NUMPY
        with pytest.raises(RuntimeError, match="no usable CUDA device"):
            get_backend("cupy")


@pytest.fixture
def gpu():
    pytest.importorskip("cupy")
    backend = get_backend()
    if not backend.gpu:
        pytest.skip("cupy is installed but no CUDA device works here")
    return backend


def test_gpu_feeder_matches_numpy_and_registers_slots(gpu):
    buffer = np.empty((4, 1, 2, 2), np.uint8)
    host = DeviceFeeder(NUMPY, scale=1 / 256, mean=3.0)
    expected = [b["data"].copy() for b in host.feed(host_batches(6, buffer=buffer))]
    with DeviceFeeder(gpu, scale=1 / 256, mean=3.0) as feeder:
        got = [gpu.to_numpy(b["data"]) for b in feeder.feed(host_batches(6, buffer=buffer),
                                                             slots=lambda: [{"data": buffer}])]
        assert feeder._registered  # the slot buffer is pinned while feeding
    assert not feeder._registered
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-6)
    assert feeder.stats[0].steps == 6


def test_gpu_training_step_runs(gpu):
    from feedstock.trainer.datasets import load_fashion_mnist
    from feedstock.trainer.loop import train

    tr, te = load_fashion_mnist()
    report = train("lenet", (tr.images[:640], tr.labels[:640]), (te.images[:200], te.labels[:200]),
                   {"base_lr": 0.01, "momentum": 0.9, "max_iter": 20, "display": 0}, None,
                   batch_size=64, backend="cupy", plots=False)
    assert report.backend == "cupy" and report.iters == 20 and report.test_accuracy > 0.2
