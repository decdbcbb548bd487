"""The fused uint8 write's OpenCV arithmetic path is bit-identical to its lookup tables (and to numpy float32)."""
from __future__ import annotations

import numpy as np
import pytest

from feedstock.transforms.fused import Scratch, build_luts, write_uint8

MEANS = [None, (104.0, 117.0, 123.0), (103.939, 116.779, 123.68), (0.5, -3.25, 255.0), (1e-3, 1e-7, 77.77)]
SCALES = [1.0, 0.017, 1 / 256, 3.0, 0.00390625, 1 / 255]


@pytest.mark.parametrize("values", MEANS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("mirror", [False, True])
def test_arith_equals_tables_for_every_pixel_value(values, scale, mirror):
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, size=(48, 80, 3), dtype=np.uint8)
    hwc[3:7, 5:71] = np.resize(np.arange(256, dtype=np.uint8), (4, 66, 3))  # every value, every channel
    src = hwc.transpose(2, 0, 1)[:, 3:45, 5:71]  # a crop of a CHW view of HWC memory, as decoded
    v = None if values is None else np.array(values, np.float32)
    s = np.float32(scale)
    luts = build_luts(3, v, s)
    want = np.empty((3, 42, 66), np.float32)
    got = np.full((3, 42, 66), np.nan, np.float32)
    write_uint8(src, want, mirror=mirror, luts=luts, mean=None, scale=s, scratch=Scratch())
    write_uint8(src, got, mirror=mirror, luts=luts, mean=None, scale=s, scratch=Scratch(), arith=True, values=v)
    assert got.tobytes() == want.tobytes()
    # and both are the float32 arithmetic itself, written out in numpy
    x = src[:, :, ::-1] if mirror else src
    ref = x.astype(np.float32)
    if v is not None:
        ref = ref - v[:, None, None]
    if s != 1:
        ref = ref * s
    assert ref.astype(np.float32).tobytes() == got.tobytes()


def test_single_channel_and_contiguous_planes():
    plane = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(2, axis=1)
    v = np.array([99.5], np.float32)
    for scale in (np.float32(1), np.float32(0.1)):
        want, got = np.empty((2, 1, 32, 16), np.float32)
        write_uint8(plane, want, mirror=True, luts=build_luts(1, v, scale), mean=None, scale=scale, scratch=Scratch())
        write_uint8(plane, got, mirror=True, luts=None, mean=None, scale=scale, scratch=Scratch(), arith=True, values=v)
        np.testing.assert_array_equal(got, want)
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("shape", [(1, 1), (4, 1), (1, 4), (2, 2), (3, 5), (4, 4), (1, 17), (17, 1), (5, 1)])
def test_tiny_planes_take_the_same_values(shape):
    rng = np.random.default_rng(3)
    src = rng.integers(0, 256, size=(3, *shape), dtype=np.uint8)
    v, s = np.array([104.5, 117.0, 123.25], np.float32), np.float32(0.5)
    want, got = np.empty((2, 3, *shape), np.float32)
    write_uint8(src, want, mirror=True, luts=build_luts(3, v, s), mean=None, scale=s, scratch=Scratch())
    write_uint8(src, got, mirror=True, luts=None, mean=None, scale=s, scratch=Scratch(), arith=True, values=v)
    assert got.tobytes() == want.tobytes()
