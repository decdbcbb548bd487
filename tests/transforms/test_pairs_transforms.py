"""The pairs transforms on small arrays: RandomScale sizes and class ids, top-left Pad, MaskToLabel, the chains."""
from __future__ import annotations

import numpy as np
import pytest

from feedstock.spec import ArraySpec
from feedstock.transforms import CenterCrop, Pad, RandomCrop
from feedstock.transforms.caffe import CaffeTransform
from feedstock.transforms.mirror import Mirror
from feedstock.transforms.multiscale import RandomScale
from feedstock.transforms.pairs import MaskToLabel, PairsConfig, build_pairs_transforms


def _sample(h: int = 7, w: int = 10) -> dict:
    rng = np.random.default_rng(0)
    return {"data": rng.integers(0, 256, (3, h, w), dtype=np.uint8),
            "mask": rng.choice(np.array([0, 3, 7, 255], np.uint8), (1, h, w))}


@pytest.mark.parametrize("scale, hw", [(0.5, (4, 5)), (1.0, (7, 10)), (1.5, (11, 15)), (0.1, (1, 1))])
def test_random_scale_sizes_round_half_up_and_keep_class_ids(scale, hw):
    out = RandomScale([scale])(_sample(), np.random.default_rng(1))  # 3.5 -> 4, 10.5 -> 11, 0.7 -> 1
    assert out["data"].shape == (3, *hw) and out["mask"].shape == (1, *hw)
    assert set(np.unique(out["mask"])) <= {0, 3, 7, 255}  # nearest: no value in between
    assert RandomScale([scale]).output_spec({"data": ArraySpec((3, 7, 10), np.uint8)})["data"].shape == (3, *hw)


def test_random_scale_draws_one_integer_per_sample():
    t = RandomScale([0.5, 1.0, 2.0])
    rng, ref = np.random.default_rng(3), np.random.default_rng(3)
    out = t(_sample(), rng)
    expected = [0.5, 1.0, 2.0][int(ref.integers(0, 3))]
    assert out["data"].shape[1] == int(np.floor(7 * expected + 0.5))
    assert rng.random() == ref.random()  # the streams are in step: exactly one draw was taken
    assert t.output_spec({"data": ArraySpec((3, 7, 10), np.uint8)})["data"].shape == (3, None, None)


def test_pad_top_left_keeps_the_image_at_the_origin():
    s = _sample(3, 4)
    out = Pad((5, 6), fill=9, mask_fill=255, anchor="top_left")(s, np.random.default_rng(0))
    np.testing.assert_array_equal(out["data"][:, :3, :4], s["data"])
    assert (out["data"][:, 3:] == 9).all() and (out["data"][:, :, 4:] == 9).all()
    assert (out["mask"][:, 3:] == 255).all() and (out["mask"][:, :, 4:] == 255).all()
    centred = Pad((5, 6), fill=9)(s, np.random.default_rng(0))
    np.testing.assert_array_equal(centred["data"][:, 1:4, 1:5], s["data"])
    with pytest.raises(ValueError, match="anchor"):
        Pad(5, anchor="middle")


def test_mask_to_label():
    s = _sample()
    out = MaskToLabel()(s, np.random.default_rng(0))
    assert sorted(out) == ["data", "label"] and out["label"] is s["mask"]
    spec = MaskToLabel().output_spec({"data": ArraySpec((3, 7, 10), np.uint8), "mask": ArraySpec((1, 7, 10), np.uint8)})
    assert spec["label"] == ArraySpec((1, 7, 10), np.uint8) and "mask" not in spec
    with pytest.raises(ValueError, match="'mask'"):
        MaskToLabel()({"data": s["data"]}, np.random.default_rng(0))


def test_chains_by_phase():
    config = PairsConfig(scales=(0.6, 1.4), crop_size=8, mirror=True, mean_value=(1, 2, 3))
    train = build_pairs_transforms(config, "TRAIN")
    assert [type(t) for t in train] == [RandomScale, Pad, RandomCrop, Mirror, MaskToLabel, CaffeTransform]
    test = build_pairs_transforms(config, "TEST")
    assert [type(t) for t in test] == [Pad, CenterCrop, MaskToLabel, CaffeTransform]
    whole = build_pairs_transforms(PairsConfig(scales=(0.5, 1.5)), 0, max_hw=(7, 10))
    assert whole[1].size == (11, 15)  # ceil(7 * 1.5), ceil(10 * 1.5)
    out = whole[-1](whole[-2](whole[1](_sample(), None), None), np.random.default_rng(0))
    assert out["data"].dtype == np.float32 and out["label"].dtype == np.uint8
    with pytest.raises(ValueError, match="max_hw"):
        build_pairs_transforms(PairsConfig(), "TEST")


@pytest.mark.parametrize("kwargs, key", [
    ({"crop_size": -1}, "crop_size"), ({"pad_value": 256}, "pad_value"), ({"ignore_label": -1}, "ignore_label"),
    ({"scales": (0.5, 0)}, "scales"), ({"mean_file": "m.binaryproto", "mean_value": (1,)}, "mean_file"),
])
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        PairsConfig(**kwargs)


def test_mean_file_gives_its_per_channel_means(tmp_path):
    from feedstock.caffe_pb import write_mean_file

    mean = np.stack([np.full((5, 5), 10.0), np.arange(25.0).reshape(5, 5), np.full((5, 5), 30.0)]).astype(np.float32)
    write_mean_file(tmp_path / "m.binaryproto", mean)
    chain = build_pairs_transforms(PairsConfig(mean_file=str(tmp_path / "m.binaryproto")), "TEST", max_hw=(7, 10))
    s = _sample()
    out = s
    for t in chain:
        out = t(out, np.random.default_rng(0))
    expected = s["data"].astype(np.float32) - np.array([10, 12, 30], np.float32)[:, None, None]
    np.testing.assert_array_equal(out["data"], expected)  # 12 = mean of 0..24: a full image cannot align
