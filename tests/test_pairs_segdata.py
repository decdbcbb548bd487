"""The synthetic shapes segmentation set: deterministic bytes, exact palette masks, the pairs layout."""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from feedstock.fixtures.segdata import CLASSES, HEIGHT, WIDTH, draw_sample, make_shapes, shapes_split
from feedstock.loaders import Pairs


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    make_shapes(tmp_path / "a", n=12, seed=3)
    make_shapes(tmp_path / "b", n=12, seed=3)
    make_shapes(tmp_path / "c", n=12, seed=4)
    a, b, c = (_digest(tmp_path / x) for x in "abc")
    assert len(a) == 12 * 2 + 1 and a == b
    assert a["pairs.txt"] == c["pairs.txt"]  # same names
    assert sum(a[k] != c[k] for k in a if k.startswith("images/")) == 12


def test_masks_are_palette_indices_of_the_drawn_classes(tmp_path):
    images, masks = make_shapes(tmp_path, n=20, seed=0)
    seen = set()
    for i in range(20):
        with Image.open(masks / f"shape_{i:05d}.png") as im:
            assert im.mode == "P" and im.size == (WIDTH, HEIGHT)
            indices = np.asarray(im)
        image, expected = draw_sample(0, i)
        np.testing.assert_array_equal(indices, expected)
        assert set(np.unique(indices)) <= set(range(len(CLASSES)))
        assert (indices > 0).any()  # every image holds at least one shape
        seen |= set(np.unique(indices).tolist())
        # the painted pixels of each class carry that class's hue (+-35 of red/green/blue)
        hue = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 0].astype(int)
        for cls, centre in ((1, 0), (2, 60), (3, 120)):
            if (indices == cls).any():
                d = np.abs(hue[indices == cls] - centre)
                assert np.minimum(d, 180 - d).max() <= 36
        decoded = cv2.imread(str(images / f"shape_{i:05d}.jpg"))
        assert decoded.shape == (HEIGHT, WIDTH, 3)
        # JPEG of the same picture: the pixel noise is partly lost, the 5x5 means are not
        smooth = [cv2.blur(x, (5, 5)).astype(int) for x in (decoded, image)]
        assert np.abs(smooth[0] - smooth[1]).mean() < 3
    assert seen == set(range(len(CLASSES)))


def test_pairs_list_and_folder_pairs_agree(tmp_path):
    make_shapes(tmp_path, n=5, seed=1)
    lines = (tmp_path / "pairs.txt").read_text().splitlines()
    assert lines[2] == "images/shape_00002.jpg\tmasks/shape_00002.png"
    source = Pairs(tmp_path / "images", tmp_path / "masks")
    assert len(source) == 5
    sample = source[2]
    np.testing.assert_array_equal(sample["mask"][0], draw_sample(1, 2)[1])


def test_split_generated_once_into_the_cache(tmp_path):
    images, masks = shapes_split("test", tmp_path)
    assert images == tmp_path / "test" / "images" and len(list(images.iterdir())) == 64
    stamp = (images / "shape_00000.jpg").stat().st_mtime_ns
    assert shapes_split("test", tmp_path) == (images, masks)
    assert (images / "shape_00000.jpg").stat().st_mtime_ns == stamp  # not regenerated
    assert [p.name for p in tmp_path.iterdir()] == ["test"]  # no temporary folder left


@pytest.mark.parametrize("kwargs, key", [({"n": 0}, "n="), ({"seed": -1}, "seed="), ({"quality": 0}, "quality=")])
def test_bad_arguments_name_the_key(tmp_path, kwargs, key):
    with pytest.raises(ValueError, match=key):
        make_shapes(tmp_path, **kwargs)
    with pytest.raises(ValueError, match="split="):
        shapes_split("val", tmp_path)


@pytest.mark.parametrize("bits, optimize", [(8, False), (8, True), (4, False), (2, False), (1, False)])
def test_palette_masks_decode_to_the_indices_pillow_reads(tmp_path, bits, optimize):
    from feedstock.loaders.decode import read_mask
    from feedstock.loaders.palette_png import as_greyscale_png

    rng = np.random.default_rng(bits)
    indices = rng.integers(0, 2 ** min(bits, 8), (13, 17)).astype(np.uint8)
    if bits == 8:
        indices[0, :3] = (0, 200, 255)
    im = Image.fromarray(indices, mode="P")
    im.putpalette([(7 * k) % 256 for k in range(768)])
    im.info["transparency"] = 3  # a tRNS chunk, which the greyscale copy must drop
    im.save(tmp_path / "m.png", bits=bits, optimize=optimize)
    data = (tmp_path / "m.png").read_bytes()
    assert data[24] == bits and b"tRNS" in data
    assert (as_greyscale_png(data) is not None) == (bits == 8)  # the fast path: 8-bit palettes only
    with Image.open(tmp_path / "m.png") as reference:
        expected = np.asarray(reference)
    np.testing.assert_array_equal(read_mask(str(tmp_path / "m.png"))[0], expected)
    np.testing.assert_array_equal(expected, indices)
