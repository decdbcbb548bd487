"""MeanSubtract, Scale, ToFloat, channel transforms, ToCHW, Occlude, and the shared contracts."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from feedstock.rng import sample_rng
from feedstock.spec import ArraySpec, spec_of
from feedstock.transforms import (
    CaffeTransform,
    Color,
    Compose,
    Gray,
    MeanSubtract,
    Mirror,
    Multiscale,
    Occlude,
    RandomCrop,
    Resize,
    Scale,
    SwapChannels,
    ToCHW,
    ToFloat,
    occlude_batch,
)


def test_mean_subtract_never_wraps_in_uint8():
    x = np.array([[[0, 255]], [[10, 20]]], np.uint8)  # (2, 1, 2)
    out = MeanSubtract(values=[104, 5.5])({"data": x}, None)["data"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[[-104, 151]], [[4.5, 14.5]]])
    one = MeanSubtract(values=104)({"data": x}, None)["data"]
    np.testing.assert_array_equal(one, [[[-104, 151]], [[-94, -84]]])
    mean = np.array([[[1, 2]], [[3, 4]]], np.float32)
    np.testing.assert_array_equal(MeanSubtract(mean=mean)({"data": x}, None)["data"], [[[-1, 253]], [[7, 16]]])


def test_mean_subtract_errors_name_the_parameter():
    x = np.zeros((3, 2, 2), np.uint8)
    with pytest.raises(ValueError, match=r"values has 2 entries.*expected 1 or 3"):
        MeanSubtract(values=[1, 2])({"data": x}, None)
    with pytest.raises(ValueError, match=r"mean has shape \(3, 4, 4\) but the image has shape \(3, 2, 2\)"):
        MeanSubtract(mean=np.zeros((3, 4, 4)))({"data": x}, None)
    with pytest.raises(ValueError, match="exactly one of mean= and values="):
        MeanSubtract()
    with pytest.raises(ValueError, match="values="):
        MeanSubtract(values=[])
    with pytest.raises(ValueError, match="values has 2 entries"):
        MeanSubtract(values=[1, 2]).output_spec({"data": ArraySpec((3, None, None), np.uint8)})


def test_scale_to_range_is_exactly_x_over_127_5_minus_1():
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    out = Scale(to_range=(-1, 1))({"data": x}, None)["data"]
    expected = x.astype(np.float32) / np.float32(127.5) - np.float32(1)
    assert out.dtype == np.float32 and out.tobytes() == expected.tobytes()
    assert out.min() == -1 and out.max() == 1
    unit = Scale(to_range=(0, 1))({"data": x}, None)["data"]
    assert unit[0, 0, 0] == 0 and unit[0, 15, 15] == 1
    np.testing.assert_array_equal(Scale(0.5)({"data": x}, None)["data"], x.astype(np.float32) * 0.5)
    with pytest.raises(ValueError, match="exactly one of factor= and to_range="):
        Scale(2, to_range=(0, 1))
    with pytest.raises(ValueError, match=r"to_range=\(1, 1\)"):
        Scale(to_range=(1, 1))


def test_to_float_keeps_values():
    x = np.array([[[3, 250]]], np.uint8)
    out = ToFloat()({"data": x}, None)["data"]
    assert out.dtype == np.float32 and out.tolist() == [[[3.0, 250.0]]]


def test_swap_gray_color():
    bgr = np.zeros((3, 1, 2), np.uint8)
    bgr[0, 0, 0] = 255  # blue pixel, then a red one
    bgr[2, 0, 1] = 255
    rgb = SwapChannels()({"data": bgr}, None)["data"]
    np.testing.assert_array_equal(rgb, bgr[::-1])
    gray = Gray()({"data": bgr}, None)["data"]
    assert gray.shape == (1, 1, 2) and gray.ravel().tolist() == [29, 76]  # 0.114 * 255, 0.299 * 255
    back = Color()({"data": gray}, None)["data"]
    np.testing.assert_array_equal(back, np.repeat(gray, 3, axis=0))
    bgra = np.concatenate([bgr, np.full((1, 1, 2), 9, np.uint8)])
    np.testing.assert_array_equal(Color()({"data": bgra}, None)["data"], bgr)
    with pytest.raises(ValueError, match="2 channels"):
        Gray()({"data": np.zeros((2, 1, 1), np.uint8)}, None)
    assert Gray().output_spec({"data": ArraySpec((3, None, None), np.uint8)})["data"].shape == (1, None, None)


def test_to_chw_is_a_view_of_hwc_memory():
    hwc = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = ToCHW()({"data": hwc, "mask": np.zeros((2, 3), np.uint8)}, None)
    assert out["data"].shape == (4, 2, 3) and np.shares_memory(out["data"], hwc)
    assert out["data"][1, 0, 2] == hwc[0, 2, 1]
    assert out["mask"].shape == (1, 2, 3)
    spec = ToCHW().output_spec({"data": ArraySpec((None, None, 3), np.uint8)})
    assert spec["data"].shape == (3, None, None)


def test_occlude_zeroes_one_quarter_block_at_an_offset_in_the_first_half():
    x = np.ones((2, 8, 10), np.float32)
    for i in range(50):
        out = Occlude()({"data": x, "mask": np.ones((1, 8, 10), np.uint8)}, sample_rng(0, 0, i))
        zero = out["data"][0] == 0
        rows, cols = np.nonzero(zero)
        assert zero.sum() == 4 * 5 and (out["data"][1] == 0).sum() == 20
        top, left = rows.min(), cols.min()
        assert 0 <= top < 4 and 0 <= left < 5
        assert zero[top : top + 4, left : left + 5].all()
        assert out["mask"].min() == 1  # the mask is untouched
    assert x.min() == 1  # the input is not modified


def test_occlude_batch_draws_per_item_and_works_in_place():
    x = np.full((16, 1, 6, 6), 200, np.uint8)
    out = occlude_batch(x, np.random.default_rng(0))
    assert x.min() == 200
    corners = {tuple(np.argwhere(item[0] == 0).min(axis=0)) for item in out}
    assert len(corners) > 1 and all(r < 3 and c < 3 for r, c in corners)
    assert all((item == 0).sum() == 9 for item in out)
    same = occlude_batch(x, np.random.default_rng(0), out=x)
    assert same is x
    np.testing.assert_array_equal(x, out)
    tiny = np.ones((2, 1, 1, 5), np.float32)
    np.testing.assert_array_equal(occlude_batch(tiny, np.random.default_rng(0)), tiny)


def test_compose_output_spec_and_into():
    hwc = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    sample = {"data": hwc.transpose(2, 0, 1), "label": np.int64(4)}
    pipe = Compose([Resize(32, 32, "crop"), RandomCrop(28), Mirror(), MeanSubtract(values=[1, 2, 3]),
                    Scale(to_range=(-1, 1)), Occlude()])
    spec = pipe.output_spec({"data": ArraySpec((3, None, None), np.uint8), "label": ArraySpec((), np.int64)})
    assert spec["data"] == ArraySpec((3, 28, 28), np.float32)
    rows = {"data": np.empty((3, 28, 28), np.float32), "label": np.empty((), np.int64)}
    pipe.into(sample, sample_rng(2, 0, 5), rows)
    np.testing.assert_array_equal(rows["data"], pipe(sample, sample_rng(2, 0, 5))["data"])
    assert rows["label"] == 4


RANDOM_TRANSFORMS = [
    RandomCrop(20), Mirror(), Resize(24, 24, "fill"), Multiscale(32), Occlude(),
    CaffeTransform(phase="TRAIN", crop_size=20, mirror=True),
]


@pytest.mark.parametrize("t", RANDOM_TRANSFORMS, ids=repr)
def test_same_seed_and_index_reproduce_and_another_seed_differs(t):
    hwc = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    sample = {"data": hwc.transpose(2, 0, 1)}
    run = lambda seed: [np.asarray(t(sample, sample_rng(seed, 0, i))["data"]) for i in range(8)]  # noqa: E731
    a, b, c = run(3), run(3), run(4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))
    u = pickle.loads(pickle.dumps(t))
    assert spec_of(u(sample, sample_rng(3, 0, 0))) == spec_of(t(sample, sample_rng(3, 0, 0)))
