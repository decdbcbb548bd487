"""Pairs through the stream definition: list-file split rule, sources, TRAIN/TEST chains, alignment, errors."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from pairs_helpers import IGNORE, PAD_VALUE, check_aligned, check_batch, write_threshold_pairs

from feedstock.errors import RecordError
from feedstock.loaders.pairs_list import read_pairs_list, split_pairs_line
from feedstock.stream import Stream

SIZES = [(40, 52), (64, 48), (30, 30), (57, 71), (48, 48), (36, 60)]


def _batches(stream: Stream, phase: str, workers: int, epochs: int = 1) -> list:
    out = []
    with stream.build_loader(phase, workers=workers) as loader:
        for _ in range(epochs):
            out.extend({k: np.array(v) for k, v in b.items()} for b in loader)
    return out


@pytest.mark.parametrize("line, expected", [
    ("a.jpg\tb.png", ("a.jpg", "b.png")),
    ("my dir/a 1.jpg\tmy masks/a 1.png", ("my dir/a 1.jpg", "my masks/a 1.png")),
    ("my dir/a 1.JPG my masks/a 1.png", ("my dir/a 1.JPG", "my masks/a 1.png")),
    ("x.jpeg y", ("x.jpeg", "y")),
    ("photos.png/a b.bmp c d.png", ("photos.png/a b.bmp", "c d.png")),
])
def test_split_rule(line, expected):
    assert split_pairs_line(line, "f:1") == expected


@pytest.mark.parametrize("line, words", [
    ("a.jpg b.jpg c.png", ["f:3", "2 candidate spaces", "tab"]),
    ("noextension mask.png", ["f:3", "no space after an image extension"]),
    ("a.jpg\tb.png\tc.png", ["f:3", "exactly one tab"]),
    ("a.jpg\t", ["f:3", "exactly one tab"]),
])
def test_split_rule_errors_name_the_line(line, words):
    with pytest.raises(ValueError) as info:
        split_pairs_line(line, "f:3")
    for word in words:
        assert word in str(info.value)


def test_list_file_root_crlf_blank_lines(tmp_path):
    (tmp_path / "l.txt").write_bytes(b"a 1.jpg m 1.png\r\n\n  \nb.png\tn.png\n")
    assert read_pairs_list(tmp_path / "l.txt", "/r/") == [("/r/a 1.jpg", "/r/m 1.png"), ("/r/b.png", "/r/n.png")]
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="e.txt.*empty"):
        read_pairs_list(tmp_path / "e.txt")


def test_list_source_with_spaces_reads_both_unchanged(tmp_path):
    images, masks, written = write_threshold_pairs(tmp_path, SIZES[:3], spaces=True, palette=False)
    lines = [f"my images/p {i:03d}.png my masks/p {i:03d}.png" for i in range(3)]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    source = Stream(source=str(tmp_path / "pairs.txt"), root_folder=f"{tmp_path}/", source_type="pairs").build_source()
    assert len(source) == 3 and source.key(1) == f"{tmp_path}/my images/p 001.png"
    for i, (image, mask) in enumerate(written):
        np.testing.assert_array_equal(source[i]["data"], image.transpose(2, 0, 1))
        np.testing.assert_array_equal(source[i]["mask"][0], mask)  # 8-bit grey mask: values kept


def test_train_chain_keeps_masks_aligned_for_every_draw(tmp_path):
    images, masks, _ = write_threshold_pairs(tmp_path, SIZES)
    stream = Stream(source=str(images), masks=str(masks), source_type="pairs", scales=(0.6, 1, 1.4), crop_size=48,
                    mirror=True, pad_value=PAD_VALUE, batch_size=3, shuffle=True, seed=5)
    batches = _batches(stream, "train", workers=0, epochs=4)
    assert len(batches) == 8
    checked = padded = 0
    for b in batches:
        assert b["data"].shape == (3, 3, 48, 48) and b["data"].dtype == np.float32
        assert b["label"].shape == (3, 1, 48, 48)
        c, p = check_batch(b)
        checked, padded = checked + c, padded + p
    assert padded > 0 and checked > 0.6 * (8 * 3 * 48 * 48 - padded)
    # the draws differ between epochs (scales, crops, mirrors) and the same with 2 workers
    assert not np.array_equal(batches[0]["data"], batches[2]["data"])
    for a, b in zip(batches, _batches(stream, "train", workers=2, epochs=4)):
        np.testing.assert_array_equal(a["data"], b["data"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_every_scale_and_mirror_draw_is_aligned(tmp_path):
    images, masks, written = write_threshold_pairs(tmp_path, [(45, 61)])
    stream = Stream(source=str(images), masks=str(masks), source_type="pairs", scales=(0.6, 1, 1.4), mirror=True,
                    pad_value=PAD_VALUE, batch_size=1, mean_value=(10, 20, 30))
    chain = stream.build_transforms("train")
    source = stream.build_source()
    seen = set()
    for index in range(40):
        rng = np.random.Generator(np.random.Philox(key=index))
        out = source[0]
        for t in chain:
            out = t(out, rng)
        assert out["data"].shape == (3, 63, 86)  # ceil(45 * 1.4) x ceil(61 * 1.4): every draw padded to it
        _, padded = check_aligned(out["data"] + np.array([10, 20, 30], np.float32)[:, None, None], out["label"])
        real = out["label"][0] != IGNORE
        h, w = real.any(axis=1).sum(), real.any(axis=0).sum()
        mirrored = not np.array_equal(out["label"][0, :h, :w], cv2.resize(
            written[0][1], (int(w), int(h)), interpolation=cv2.INTER_NEAREST_EXACT))
        seen.add((int(h), int(w), mirrored))
    assert {(h, w) for h, w, _ in seen} == {(27, 37), (45, 61), (63, 85)}
    assert {m for _, _, m in seen} == {True, False}


def test_test_phase_whole_image_top_left_padded_with_ignore(tmp_path):
    images, masks, written = write_threshold_pairs(tmp_path, SIZES)
    stream = Stream(source=str(images), masks=str(masks), source_type="pairs", pad_value=PAD_VALUE, batch_size=4,
                    scales=(0.6, 1.4), mirror=True)
    rows = [row for b in _batches(stream, "test", workers=0) for row in zip(b["data"], b["label"])]
    assert len(rows) == len(SIZES)
    for (data, label), (image, mask) in zip(rows, written):
        h, w = mask.shape
        assert data.shape == (3, 64, 71)  # the largest height and width of the set, scale 1
        np.testing.assert_array_equal(data[:, :h, :w], image.transpose(2, 0, 1))
        np.testing.assert_array_equal(label[0, :h, :w], mask)
        assert (label[0, h:] == IGNORE).all() and (label[0, :, w:] == IGNORE).all()
        assert (data[:, h:] == PAD_VALUE).all() and (data[:, :, w:] == PAD_VALUE).all()


def test_test_phase_centre_crop(tmp_path):
    images, masks, written = write_threshold_pairs(tmp_path, [(40, 52), (30, 30)])
    stream = Stream(source=str(images), masks=str(masks), source_type="pairs", crop_size=36, pad_value=PAD_VALUE,
                    batch_size=2)
    (b,) = _batches(stream, "test", workers=0)
    np.testing.assert_array_equal(b["label"][0, 0], written[0][1][2:38, 8:44])  # (40-36)//2, (52-36)//2
    np.testing.assert_array_equal(b["label"][1, 0, :30, :30], written[1][1])  # padded below/right to 36, then
    assert (b["label"][1, 0, 30:] == IGNORE).all()                           # the centre crop is all of it


def test_missing_and_mismatched_masks_name_both_files(tmp_path):
    images, masks, _ = write_threshold_pairs(tmp_path, SIZES[:4])
    (masks / "p001.png").unlink()
    with pytest.raises(ValueError, match=r"1 of 4 images .* no mask .*'p001\.png'"):
        Stream(source=str(images), masks=str(masks), source_type="pairs").build_source()
    cv2.imwrite(str(masks / "p002.png"), np.zeros((5, 5), np.uint8))
    stream = Stream(source=str(images), masks=str(masks), source_type="pairs", on_error="skip",
                    max_bad_fraction=0.5, batch_size=4, crop_size=24)
    source = stream.build_source()
    with pytest.raises(RecordError, match=r"p002\.png.*mask .*p002\.png' is 5x5 but the image is 30x30"):
        source[2]
    with pytest.raises(RecordError, match=r"p001\.png.*has no mask"):
        source[1]
    with stream.build_loader("test", workers=0) as loader:
        (batch,) = list(loader)
        report = loader.report()
    assert report["bad_records"] == 2
    assert sorted(r["key"] for r in report["skipped"]) == [str(images / "p001.png"), str(images / "p002.png")]
    assert batch["label"].shape == (4, 1, 24, 24)


def test_colour_masks_are_refused_not_converted(tmp_path):
    images, masks, _ = write_threshold_pairs(tmp_path, SIZES[:1])
    colour = np.zeros((40, 52, 3), np.uint8)
    colour[..., 2] = 128
    cv2.imwrite(str(masks / "p000.png"), colour)
    with pytest.raises(RecordError, match="mask .*3 colour channels"):
        Stream(source=str(images), masks=str(masks), source_type="pairs").build_source()[0]


@pytest.mark.parametrize("changes, words", [
    ({"masks": ""}, ["masks", "required"]),
    ({"root_folder": "/x/"}, ["root_folder", "list file"]),
    ({"occlude": True}, ["occlude"]),
    ({"ignore_label": 300}, ["ignore_label"]),
    ({"pad_value": -1.0}, ["pad_value"]),
])
def test_bad_pairs_settings_name_the_key(tmp_path, changes, words):
    images, masks, _ = write_threshold_pairs(tmp_path, SIZES[:1])
    settings = dict(source=str(images), masks=str(masks), source_type="pairs", crop_size=8)
    settings.update(changes)
    with pytest.raises(ValueError) as info:
        stream = Stream(**settings)
        stream.build_source()
        stream.build_transforms("train")
    for word in words:
        assert word in str(info.value)


def test_whole_image_padding_follows_exif_rotation(tmp_path):
    from PIL import Image

    images, masks, _ = write_threshold_pairs(tmp_path, [(20, 30)])
    photo = Image.fromarray(np.zeros((10, 24, 3), np.uint8))
    exif = photo.getexif()
    exif[0x0112] = 6  # stored 10x24, shown (and decoded by OpenCV) turned: 24x10
    photo.save(images / "turned.jpg", exif=exif.tobytes())
    cv2.imwrite(str(masks / "turned.png"), np.ones((24, 10), np.uint8))
    stream = Stream(source=str(images), masks=str(masks), source_type="pairs", batch_size=2)
    (batch,) = _batches(stream, "test", workers=0)
    assert batch["data"].shape == (2, 3, 24, 30)  # the largest height is the turned picture's 24
    assert (batch["label"][1, 0, :24, :10] == 1).all() and (batch["label"][1, 0, :, 10:] == IGNORE).all()


def test_masks_folder_inside_the_images_folder_is_not_scanned_as_images(tmp_path):
    images, _, written = write_threshold_pairs(tmp_path, SIZES[:2])
    (tmp_path / "masks").rename(images / "masks")
    source = Stream(source=str(images), masks=str(images / "masks"), source_type="pairs").build_source()
    assert len(source) == 2
    np.testing.assert_array_equal(source[1]["mask"][0], written[1][1])


def test_yaml_and_flags_forms_give_the_same_pairs_batches(tmp_path):
    import argparse

    from feedstock.stream import add_stream_arguments, stream_from_args, stream_from_yaml

    images, masks, _ = write_threshold_pairs(tmp_path, SIZES)
    (tmp_path / "s.yaml").write_text(f"source: {images}\nmasks: {masks}\nsource_type: pairs\nscales: [0.6, 1, 1.4]\n"
                                     "crop_size: 32\nmirror: true\npad_value: 200\nbatch_size: 3\nseed: 4\n")
    parser = argparse.ArgumentParser()
    add_stream_arguments(parser)
    flags = parser.parse_args([str(images), "--source-type", "pairs", "--masks", str(masks), "--scales", "0.6,1,1.4",
                               "--crop-size", "32", "--mirror", "--pad-value", "200", "--batch-size", "3", "--seed", "4"])
    a = _batches(stream_from_yaml(tmp_path / "s.yaml"), "train", workers=0)
    b = _batches(stream_from_args(flags), "train", workers=0)
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["data"], y["data"])
        np.testing.assert_array_equal(x["label"], y["label"])
        check_batch(x)
