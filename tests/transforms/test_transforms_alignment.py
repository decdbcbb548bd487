"""Property tests: a mask stays on the pixels it marks under every random geometric transform.

The image encodes each pixel's source position (channel 0 = row, 1 = column,
2 = 0 for a real pixel; padding fills it with 255), so after any transform the
expected mask value of every output pixel can be looked up in the input mask.
Images are resized nearest-neighbour here so the encoded positions survive.
"""
from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from feedstock.rng import sample_rng
from feedstock.transforms import CaffeTransform, Compose, Mirror, Multiscale, Pad, RandomCrop, Resize
from feedstock.transforms.multiscale import RandomScale

NEAREST = cv2.INTER_NEAREST
SETTINGS = settings(max_examples=40, deadline=None)


def position_sample(h: int, w: int, mask_seed: int) -> dict:
    hwc = np.zeros((h, w, 3), np.uint8)
    hwc[..., 0] = np.arange(h)[:, None]
    hwc[..., 1] = np.arange(w)[None, :]
    mask = np.random.default_rng(mask_seed).integers(0, 2, (1, h, w)).astype(np.uint8) * 255
    return {"data": hwc.transpose(2, 0, 1), "mask": mask, "label": np.int64(7)}


def assert_aligned(sample: dict, out: dict) -> None:
    img = np.asarray(out["data"]).astype(np.int64)
    mask_out = np.asarray(out["mask"])[0]
    assert img.shape[1:] == mask_out.shape
    real = img[2] == 0
    expected = sample["mask"][0][img[0][real], img[1][real]]
    np.testing.assert_array_equal(mask_out[real], expected)
    assert (mask_out[~real] == 0).all()
    assert out["label"] == 7


dims = st.integers(min_value=6, max_value=48)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@SETTINGS
@given(h=dims, w=dims, crop_frac=st.floats(0.1, 1.0), seed=seeds, index=st.integers(0, 10**6))
def test_random_crop_and_mirror(h, w, crop_frac, seed, index):
    sample = position_sample(h, w, seed)
    size = (max(1, int(h * crop_frac)), max(1, int(w * crop_frac)))
    t = Compose([RandomCrop(size), Mirror()])
    assert_aligned(sample, t(sample, sample_rng(seed, 0, index)))


@SETTINGS
@given(h=dims, w=dims, size=st.integers(8, 64),
       scales=st.lists(st.floats(0.3, 2.0), min_size=1, max_size=4), seed=seeds)
def test_multiscale(h, w, size, scales, seed):
    sample = position_sample(h, w, seed)
    t = Multiscale(size, scales=scales, interpolation=NEAREST)
    out = t(sample, sample_rng(seed, 1, 0))
    assert out["data"].shape == (3, size, size)
    assert_aligned(sample, out)


@SETTINGS
@given(h=dims, w=dims, th=st.integers(4, 64), tw=st.integers(4, 64),
       mode=st.sampled_from(["squash", "crop", "fill", "half_crop"]), seed=seeds)
def test_resize_modes(h, w, th, tw, mode, seed):
    sample = position_sample(h, w, seed)
    out = Resize(th, tw, mode, NEAREST, fill=255)(sample, sample_rng(seed, 0, 1))
    assert out["data"].shape == (3, th, tw)
    assert_aligned(sample, out)


@SETTINGS
@given(h=dims, w=dims, crop_frac=st.floats(0.1, 1.0), phase=st.sampled_from(["TRAIN", "TEST"]),
       seed=seeds, index=st.integers(0, 10**6))
def test_caffe_transform_crop_and_mirror(h, w, crop_frac, phase, seed, index):
    sample = position_sample(h, w, seed)
    crop = max(1, int(min(h, w) * crop_frac))
    t = CaffeTransform(phase=phase, crop_size=crop, mirror=True)
    assert_aligned(sample, t(sample, sample_rng(seed, 0, index)))
    rows = {"data": np.empty((3, crop, crop), np.float32), "mask": np.empty((1, crop, crop), np.uint8),
            "label": np.zeros((), np.int64)}
    t.into(sample, sample_rng(seed, 0, index), rows)
    assert_aligned(sample, rows)


@SETTINGS
@given(h=dims, w=dims, size=st.integers(8, 40), seed=seeds, index=st.integers(0, 10**6))
def test_chains(h, w, size, seed, index):
    sample = position_sample(h, w, seed)
    t = Compose([Pad(size, fill=255), Multiscale(size + 8, scales=(0.75, 1.25), interpolation=NEAREST),
                 RandomCrop(size), Mirror(), Resize(size, size + 3, "half_crop", NEAREST, fill=255)])
    assert_aligned(sample, t(sample, sample_rng(seed, 0, index)))


@SETTINGS
@given(h=dims, w=dims, crop=st.integers(4, 40), scales=st.lists(st.floats(0.3, 2.0), min_size=1, max_size=3),
       seed=seeds, index=st.integers(0, 10**6))
def test_pairs_chain_random_scale_pad_crop_mirror(h, w, crop, scales, seed, index):
    # the image resized with the mask's own nearest rule, so the encoded positions survive exactly
    sample = position_sample(h, w, seed)
    t = Compose([RandomScale(scales, interpolation=cv2.INTER_NEAREST_EXACT),
                 Pad(crop, fill=255, anchor="top_left"), RandomCrop(crop), Mirror()])
    out = t(sample, sample_rng(seed, 0, index))
    assert out["data"].shape == (3, crop, crop)
    assert_aligned(sample, out)
