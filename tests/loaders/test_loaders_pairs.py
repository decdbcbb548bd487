"""Pairs: image + mask matching, mask decoding (grey and palette PNG), shape checks."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from PIL import Image

from feedstock.errors import RecordError
from feedstock.loaders import Pairs


def _write(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return array


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(0)
    images, masks = tmp_path / "images", tmp_path / "masks"
    out = {}
    for stem, suffix in (("a", ".png"), ("sub/b", ".bmp")):
        img = _write(images / f"{stem}.jpg", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
        mask = _write(masks / f"{stem}{suffix}", rng.integers(0, 4, (6, 8), dtype=np.uint8))
        out[stem] = (img, mask)
    return images, masks, out


def test_folder_pairs_match_by_relative_stem(folders):
    images, masks, written = folders
    src = Pairs(images, masks)
    assert len(src) == 2
    assert src.paths(1) == (str(images / "sub" / "b.jpg"), str(masks / "sub" / "b.bmp"))
    for i, stem in enumerate(["a", "sub/b"]):
        sample = src[i]
        assert sorted(sample) == ["data", "mask"]
        assert sample["data"].shape == (3, 6, 8) and sample["mask"].shape == (1, 6, 8)
        assert sample["mask"].dtype == np.uint8
        np.testing.assert_array_equal(sample["mask"][0], written[stem][1])  # PNG/BMP masks are lossless
        np.testing.assert_array_equal(sample["data"], cv2.imread(src.key(i)).transpose(2, 0, 1))


def test_mask_suffix_priority(folders):
    images, masks, written = folders
    _write(masks / "a.bmp", np.full((6, 8), 9, np.uint8))
    np.testing.assert_array_equal(Pairs(images, masks)[0]["mask"][0], written["a"][1])
    assert (Pairs(images, masks, mask_suffixes=(".bmp", ".png"))[0]["mask"] == 9).all()


def test_missing_masks_are_listed(folders):
    images, masks, _ = folders
    _write(images / "c.jpg", np.zeros((2, 2, 3), np.uint8))
    _write(images / "d.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"2 of 4 images .* no mask .*'c\.jpg', 'd\.png'"):
        Pairs(images, masks)


def test_explicit_pair_list_and_palette_masks(tmp_path):
    img = _write(tmp_path / "x.jpg", np.zeros((3, 4, 3), np.uint8))
    indices = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [0, 0, 15, 15]], dtype=np.uint8)
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette([v for k in range(256) for v in ((k * 37) % 256, (k * 91) % 256, 255 - k)])
    palette.save(tmp_path / "x_mask.png")
    src = Pairs([(str(tmp_path / "x.jpg"), str(tmp_path / "x_mask.png"))])
    sample = src[0]
    np.testing.assert_array_equal(sample["mask"][0], indices)  # class ids, not palette colours
    assert sample["data"].shape == (3,) + img.shape[:2]


def test_mask_size_mismatch_names_the_record(tmp_path):
    _write(tmp_path / "x.jpg", np.zeros((3, 4, 3), np.uint8))
    _write(tmp_path / "x.png", np.zeros((4, 3), np.uint8))
    src = Pairs([(tmp_path / "x.jpg", tmp_path / "x.png")])
    with pytest.raises(RecordError, match="3x4 .H x W.") as info:
        src[0]
    assert info.value.key == str(tmp_path / "x.jpg")


def test_argument_errors(tmp_path, folders):
    images, masks, _ = folders
    with pytest.raises(ValueError, match="masks= .* required"):
        Pairs(images)
    with pytest.raises(ValueError, match="masks= must be None"):
        Pairs([("a", "b")], masks)
    with pytest.raises(ValueError, match="empty"):
        Pairs([])
    with pytest.raises(ValueError, match="mask_suffixes"):
        Pairs(images, masks, mask_suffixes=".png")
    with pytest.raises(ValueError, match="not a directory"):
        Pairs(images, tmp_path / "nope")
