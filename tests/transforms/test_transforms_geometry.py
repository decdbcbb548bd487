"""Crop, Mirror, Pad, Resize (DIGITS modes) and Multiscale: exact placement on small arrays."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from feedstock.rng import sample_rng
from feedstock.spec import ArraySpec, spec_of
from feedstock.transforms import CenterCrop, Mirror, Multiscale, Pad, RandomCrop, Resize


def position_image(h: int, w: int) -> np.ndarray:
    """CHW view of HWC uint8: channel 0 = row, 1 = column, 2 = 0 (a real pixel; fills use 255)."""
    hwc = np.zeros((h, w, 3), np.uint8)
    hwc[..., 0] = np.arange(h)[:, None]
    hwc[..., 1] = np.arange(w)[None, :]
    return hwc.transpose(2, 0, 1)


NEAREST = cv2.INTER_NEAREST


def test_center_crop_floor_centres_odd_margins():
    x = position_image(7, 9)
    out = CenterCrop((4, 4))({"data": x}, np.random.default_rng(0))["data"]
    assert out[0, 0, 0] == 1 and out[1, 0, 0] == 2  # (7-4)//2 = 1, (9-4)//2 = 2
    assert out.shape == (3, 4, 4)


def test_random_crop_offsets_are_uniform_over_the_inclusive_range():
    x = position_image(5, 6)
    corners = {tuple(RandomCrop(4)({"data": x}, sample_rng(0, 0, i))["data"][:2, 0, 0]) for i in range(300)}
    assert corners == {(r, c) for r in range(2) for c in range(3)}


def test_random_crop_uses_rng_integers_top_then_left():
    x = position_image(10, 12)
    out = RandomCrop((3, 5))({"data": x}, np.random.default_rng(9))["data"]
    g = np.random.default_rng(9)
    top, left = g.integers(0, 8), g.integers(0, 8)
    assert (out[0, 0, 0], out[1, 0, 0]) == (top, left)


def test_mirror_probability_extremes_and_mask():
    x = position_image(2, 4)
    mask = np.array([[[0, 255, 255, 0], [255, 0, 0, 0]]], np.uint8)
    flipped = Mirror(p=1.0)({"data": x, "mask": mask}, np.random.default_rng(0))
    np.testing.assert_array_equal(flipped["data"][1, 0], [3, 2, 1, 0])
    np.testing.assert_array_equal(flipped["mask"][0], [[0, 255, 255, 0], [0, 0, 0, 255]])
    kept = Mirror(p=0.0)({"data": x, "mask": mask}, np.random.default_rng(0))
    np.testing.assert_array_equal(kept["data"], x)


def test_pad_centres_with_the_extra_row_and_column_last():
    x = np.full((1, 3, 3), 7, np.uint8)
    out = Pad(6, fill=1)({"data": x, "mask": np.full((1, 3, 3), 255, np.uint8)}, None)
    expected = np.ones((1, 6, 6), np.uint8)
    expected[:, 1:4, 1:4] = 7
    np.testing.assert_array_equal(out["data"], expected)
    assert out["mask"][0, 1:4, 1:4].min() == 255 and out["mask"].sum() == 9 * 255
    big = np.zeros((2, 8, 5), np.float32)
    assert Pad((4, 6))({"data": big}, None)["data"].shape == (2, 8, 6)  # never crops


def test_squash_uses_opencv_bilinear_a_2x_downscale_is_the_rounded_block_mean():
    g = np.random.default_rng(0)
    x = g.integers(0, 256, (3, 8, 6), dtype=np.uint8)
    out = Resize(4, 3)({"data": x}, None)["data"]
    blocks = x.reshape(3, 4, 2, 3, 2).astype(np.int64).sum(axis=(2, 4))
    np.testing.assert_array_equal(out, (blocks + 2) // 4)


def test_crop_mode_covers_then_centre_crops_the_long_side():
    x = position_image(100, 200)
    out = Resize(50, 50, "crop", NEAREST)({"data": x}, None)["data"]
    # ratio 2 -> 50x100, start = round((100 - 50) / 2) = 25 -> source columns 2 * (25 + j)
    assert out.shape == (3, 50, 50)
    np.testing.assert_array_equal(out[1, 0], 50 + 2 * np.arange(50))
    np.testing.assert_array_equal(out[0, :, 0], 2 * np.arange(50))


def test_crop_mode_start_rounds_half_up_like_python2():
    x = position_image(10, 31)  # -> 10x31 at scale 1, crop 10x10 from 21 extra: start = round(10.5) = 11
    out = Resize(10, 10, "crop", NEAREST)({"data": x}, None)["data"]
    assert out[1, 0, 0] == 11


def test_fill_mode_fits_inside_and_pads_with_noise_or_the_fill_value():
    x = position_image(100, 200)
    mask = np.full((1, 100, 200), 255, np.uint8)
    # fit: 25x50 -> (50 - 25) odd -> 26 rows, top = 12
    out = Resize(50, 50, "fill", NEAREST, fill=255)({"data": x, "mask": mask}, None)
    real = out["data"][2] == 0
    assert real[12:38].all() and not real[:12].any() and not real[38:].any()
    assert (out["mask"][0] == 255 * real).all()
    noisy = [Resize(50, 50, "fill")({"data": x}, sample_rng(s, 0, 0))["data"] for s in (0, 0, 1)]
    assert noisy[0].shape == (3, 50, 50) and noisy[0][:, :12].max() <= 254
    np.testing.assert_array_equal(noisy[0], noisy[1])
    assert not np.array_equal(noisy[0][:, :12], noisy[2][:, :12])


def test_half_crop_mode_crops_one_side_and_pads_the_other():
    x = position_image(100, 200)
    out = Resize(50, 50, "half_crop", NEAREST, fill=255)({"data": x}, None)["data"]
    # ratio (4 + 2) / 2 = 3 -> 33x67, rows 33 -> 34 (even margin), crop start round(8.5) = 9, top = 8
    real = out[2] == 0
    assert real[8:42].all() and not real[:8].any() and not real[42:].any()
    assert out[1, 8, 0] == 9 * 200 // 67  # nearest: resized column 9 <- source column floor(9 * 200 / 67)


def test_resize_is_a_no_op_at_the_target_size_and_squash_ignores_aspect():
    x = position_image(20, 40)
    for mode in ("squash", "crop", "fill", "half_crop"):
        np.testing.assert_array_equal(Resize(20, 40, mode)({"data": x}, None)["data"], x)
    assert Resize(10, 10)({"data": x}, None)["data"].shape == (3, 10, 10)


def test_multiscale_letterboxes_with_255_and_masks_with_0():
    x = np.zeros((3, 4, 8), np.uint8)
    mask = np.full((1, 4, 8), 200, np.uint8)  # re-binarised: >= 128 -> 255
    out = Multiscale(8, scales=(1.0,))({"data": x, "mask": mask}, np.random.default_rng(0))
    rows = np.arange(8)
    inside = (rows >= 2) & (rows < 6)  # 4 rows centred in 8
    np.testing.assert_array_equal(out["data"][0, :, 0], np.where(inside, 0, 255))
    np.testing.assert_array_equal(out["mask"][0, :, 0], np.where(inside, 255, 0))


def test_multiscale_draws_a_scale_then_offsets():
    x = position_image(16, 16)
    t = Multiscale(16, scales=(0.5, 2.0), interpolation=NEAREST)
    seen = set()
    for i in range(20):
        out = t({"data": x}, sample_rng(3, 0, i))["data"]
        real = out[2] == 0
        g = sample_rng(3, 0, i)
        s = (0.5, 2.0)[g.integers(0, 2)]
        seen.add(s)
        bound = 9 if s == 0.5 else 17  # |scaled square - 16| + 1
        dy, dx = g.integers(0, bound), g.integers(0, bound)
        if s == 0.5:  # an 8x8 image pasted at (dy, dx): its pixel (r, c) is source (2r, 2c)
            assert real.sum() == 64 and real[dy : dy + 8, dx : dx + 8].all()
            np.testing.assert_array_equal(out[0, dy : dy + 8, dx], 2 * np.arange(8))
        else:  # a 32x32 image cropped at (dy, dx): output (0, 0) is source pixel (dy, dx) // 2
            assert real.all() and (out[0, 0, 0], out[1, 0, 0]) == (dy // 2, dx // 2)
    assert seen == {0.5, 2.0}


def test_output_specs_match_outputs():
    x = position_image(30, 40)
    sample = {"data": x, "mask": np.zeros((1, 30, 40), np.uint8), "label": np.int64(1)}
    for t in [RandomCrop(20), CenterCrop((10, 30)), Mirror(), Pad(50), Resize(16, 24, "fill"),
              Resize(16, 24, "half_crop"), Multiscale(32)]:
        out = t(sample, np.random.default_rng(0))
        assert t.output_spec(spec_of(sample)) == spec_of(out), t
        assert out["label"] == 1


@pytest.mark.parametrize("make, words", [
    (lambda: RandomCrop(0), ["size", "0"]),
    (lambda: CenterCrop((3, "a")), ["size"]),
    (lambda: Mirror(p=1.5), ["p", "1.5"]),
    (lambda: Pad(4, fill=float("nan")), ["fill", "nan"]),
    (lambda: Resize(10, 10, "stretch"), ["mode", "stretch"]),
    (lambda: Resize(10, -1), ["(h, w)", "-1"]),
    (lambda: Resize(10, 10, interpolation=99), ["interpolation", "99"]),
    (lambda: Multiscale(32, scales=()), ["scales", "()"]),
    (lambda: Multiscale(32, scales=(1.0, -0.5)), ["scales", "-0.5"]),
    (lambda: Multiscale(0), ["size", "0"]),
])
def test_bad_parameters_raise_value_error_naming_them(make, words):
    with pytest.raises(ValueError) as e:
        make()
    for w in words:
        assert w in str(e.value)


def test_crop_larger_than_the_image_is_a_clear_error():
    x = np.zeros((3, 10, 12), np.uint8)
    with pytest.raises(ValueError, match=r"size=\(11, 11\) is larger than the image \(10x12\)"):
        RandomCrop(11)({"data": x}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="larger than the image"):
        CenterCrop(11).output_spec({"data": ArraySpec((3, 10, None), np.uint8)})
    with pytest.raises(ValueError, match="not aligned"):
        Mirror()({"data": x, "mask": np.zeros((1, 10, 11), np.uint8)}, np.random.default_rng(0))
