"""feedstock inspect with pairs: class-frequency table, overlay contact sheet, pairs layouts found by themselves."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from pairs_helpers import run_cli, write_threshold_pairs

from feedstock.loaders.caffe_lmdb import release_env
from feedstock.palette import ALPHA, class_bgr, overlay

SIZES = [(40, 52), (64, 48), (30, 30)]


def _expected_rows(written) -> dict:
    """class -> (pixels, images holding it), counted by hand from the written masks."""
    rows = {}
    for _, mask in written:
        for k in np.unique(mask).tolist():
            pixels, images = rows.get(k, (0, 0))
            rows[k] = (pixels + int((mask == k).sum()), images + 1)
    return rows


def _table(stdout: str) -> dict:
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0].isdigit() and parts[-2].endswith("%"):
            rows[int(parts[0])] = (int(parts[-3]), int(parts[-1]))
    return rows


@pytest.mark.parametrize("layout", ["masks flag", "dataset folder", "images folder", "voc names"])
def test_table_counts_pixels_per_class_and_grid_overlays(tmp_path, layout):
    images, masks, written = write_threshold_pairs(tmp_path, SIZES)
    if layout == "voc names":
        images, masks = images.rename(tmp_path / "JPEGImages"), masks.rename(tmp_path / "SegmentationClass")
    path = {"masks flag": images, "dataset folder": tmp_path, "images folder": images, "voc names": images}[layout]
    extra = ["--masks", masks] if layout == "masks flag" else []
    code, stdout, err = run_cli("inspect", path, *extra, "--grid", tmp_path / "grid.png", "--class-names", "a,b,c,d")
    assert code == 0, err
    assert "records: 3" in stdout and "image sizes (H x W): 3 distinct, 30x30 .. 64x48" in stdout
    assert _table(stdout) == _expected_rows(written)
    total = sum(h * w for h, w in SIZES)
    assert f"over 3 masks ({total} pixels)" in stdout and "  0  a " in stdout
    sheet = cv2.imread(str(tmp_path / "grid.png"))
    grid_h = 2 * (128 + 18 + 4) + 4
    assert sheet is not None and sheet.shape[1] == 2 * (128 + 4) + 4 and sheet.shape[0] > grid_h  # + the legend
    legend = sheet[grid_h:]
    for k in range(4):  # a swatch of each class's colour in the legend under the grid
        assert (legend == np.array(class_bgr(k), np.uint8)).all(axis=2).sum() >= 100, k


def test_overlay_blends_a_colour_per_class_over_the_grey_image():
    image = np.zeros((3, 6, 6), np.uint8)
    image[:] = np.array([200, 40, 10], np.uint8)[:, None, None]  # a saturated blue (BGR) image
    mask = np.zeros((1, 6, 6), np.uint8)
    mask[0, 1:5, 1:5] = 2
    mask[0, 2:4, 2:4] = 255
    out = overlay(image, mask).astype(int)
    grey = round(0.114 * 200 + 0.587 * 40 + 0.299 * 10)  # BT.601 luma of the pixel
    np.testing.assert_array_equal(out[0, 0], [grey] * 3)  # class 0: the image, in grey
    colours = {k: class_bgr(k) for k in (1, 2, 3)}
    assert len(set(colours.values())) == 3 and all(len(set(c)) > 1 for c in colours.values())  # coloured, apart
    np.testing.assert_array_equal(out[1, 1], class_bgr(2))  # a region's border: the full colour
    np.testing.assert_array_equal(out[2, 2], class_bgr(255))  # ignore: white border
    assert class_bgr(255) == (255, 255, 255)
    inner = np.zeros((1, 6, 6), np.uint8)
    inner[0, 1:5, 1:5] = 1
    blended = overlay(image, inner).astype(int)[2, 2]
    np.testing.assert_array_equal(blended, np.round((1 - ALPHA) * grey + ALPHA * np.array(class_bgr(1))))


def test_pairs_list_lmdb_and_unreadable_pairs(tmp_path):
    images, masks, written = write_threshold_pairs(tmp_path, SIZES, spaces=True)
    cv2.imwrite(str(masks / "p 002.png"), np.zeros((3, 3), np.uint8))
    (tmp_path / "l.txt").write_text("".join(f"my images/p {i:03d}.png\tmy masks/p {i:03d}.png\n" for i in range(3)))
    code, stdout, err = run_cli("inspect", tmp_path / "l.txt", "--source-type", "pairs", "--root-folder", f"{tmp_path}/")
    assert code == 0, err
    assert _table(stdout) == _expected_rows(written[:2])
    assert "unreadable pair" in stdout and "is 3x3 but the image is 30x30" in stdout
    code, _, err = run_cli("build-lmdb", tmp_path / "l.txt", tmp_path / "db", "--kind", "pairs", "--root",
                        f"{tmp_path}/", "-q")
    assert code == 0, err
    code, stdout, err = run_cli("inspect", tmp_path / "db" / "images_lmdb", "--masks", tmp_path / "db" / "labels_lmdb")
    assert code == 0, err
    assert "LmdbPairs(" in stdout and _table(stdout) == _expected_rows(written[:2])
    release_env(str(tmp_path / "db" / "images_lmdb"))
    release_env(str(tmp_path / "db" / "labels_lmdb"))


def test_a_folder_of_images_without_masks_is_not_taken_for_pairs(tmp_path):
    from feedstock.cli.inspect_pairs import guess_pairs

    images, masks, _ = write_threshold_pairs(tmp_path, SIZES)
    assert guess_pairs(str(images)) == (str(images), str(masks))
    for p in masks.iterdir():
        p.rename(p.with_name("other" + p.name))
    assert guess_pairs(str(images)) is None and guess_pairs(str(tmp_path)) is None
