"""build-lmdb from images: convert_imageset parity checked byte by byte with an independent Datum parser."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from test_build_helpers import cli_output, parse_datum_wire, raw_pixels, read_db

from feedstock.caffe_pb import BlobProto, read_mean_file
from feedstock.loaders import CaffeLmdb

RAW_TAGS = [0x08, 0x10, 0x18, 0x22, 0x28, 0x38]  # convert_imageset raw: C, H, W, data, label, encoded=false
ENCODED_TAGS = [0x22, 0x28, 0x38]  # encoded: data, label, encoded=true; no C/H/W


def write_folder(root, rng, classes=("cat", "dog"), per_class=3, ext=".png", sizes=((12, 16),)):
    """root/<class>/<i><ext> random BGR images; returns {relative path: (label, BGR array as written)}."""
    out = {}
    for label, name in enumerate(sorted(classes)):
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            rel = f"{name}/{i:03d}{ext}"
            assert cv2.imwrite(str(root / rel), img)
            out[rel] = (label, img if ext == ".png" else cv2.imread(str(root / rel)))
    return out


def build(*args):
    code, out, err = cli_output(["build-lmdb", *args, "--quiet"])
    assert code == 0, err
    return out


def test_image_folder_raw_color_datums_are_caffe_bytes(tmp_path):
    images = write_folder(tmp_path / "imgs", np.random.default_rng(0), sizes=((12, 16), (9, 7)))
    out = build(tmp_path / "imgs", tmp_path / "db", "--workers", "0")
    records = read_db(tmp_path / "db")
    expected_keys = [f"{i:08d}_{rel}".encode() for i, rel in enumerate(sorted(images))]
    assert [k for k, _ in records] == expected_keys
    for (_key, value), rel in zip(records, sorted(images)):
        fields = parse_datum_wire(value)
        label, img = images[rel]
        assert fields["tags"] == RAW_TAGS and fields["encoded"] == 0
        assert fields["label"] == label
        np.testing.assert_array_equal(raw_pixels(fields), img.transpose(2, 0, 1))  # CHW, BGR planes
    # The same records through feedstock's reader.
    source = CaffeLmdb(tmp_path / "db")
    assert len(source) == len(images)
    for i, rel in enumerate(sorted(images)):
        np.testing.assert_array_equal(source[i]["data"], images[rel][1].transpose(2, 0, 1))
        assert int(source[i]["label"]) == images[rel][0]
    assert (tmp_path / "db" / "labels.txt").read_text() == "cat\ndog\n"
    assert "6 records" in out and "0 skipped" in out


def test_list_file_gray_resize_is_opencv_linear_and_keys_keep_spaces(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "img").mkdir()
    grays = {}
    for name in ("a b.png", "c.png"):
        grays[name] = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
        assert cv2.imwrite(str(tmp_path / "img" / name), grays[name])
    (tmp_path / "list.txt").write_text("a b.png 3\nc.png 1\n")
    build(tmp_path / "list.txt", tmp_path / "db", "--root", f"{tmp_path}/img/", "--gray",
          "--resize-height", "4", "--resize-width", "4", "--workers", "0")
    records = read_db(tmp_path / "db")
    assert [k for k, _ in records] == [b"00000000_a b.png", b"00000001_c.png"]
    for (_key, value), (name, label) in zip(records, (("a b.png", 3), ("c.png", 1))):
        fields = parse_datum_wire(value)
        assert fields["tags"] == RAW_TAGS and fields["label"] == label
        assert (fields["channels"], fields["height"], fields["width"]) == (1, 4, 4)
        # docs/caffe-compat.md note 23: a 2x INTER_LINEAR downscale is the 2x2 block mean rounded half up.
        g = grays[name].astype(np.int64)
        blocks = (g[0::2, 0::2] + g[1::2, 0::2] + g[0::2, 1::2] + g[1::2, 1::2] + 2) // 4
        np.testing.assert_array_equal(raw_pixels(fields)[0], blocks)


def test_one_resize_size_alone_does_not_resize(tmp_path):
    images = write_folder(tmp_path / "imgs", np.random.default_rng(2), per_class=1)
    build(tmp_path / "imgs", tmp_path / "db", "--resize-height", "5", "--workers", "0")
    fields = parse_datum_wire(read_db(tmp_path / "db")[0][1])
    assert (fields["height"], fields["width"]) == (12, 16)  # Caffe resizes only when both are set
    assert len(images) == 2


def test_encoded_keeps_original_bytes_when_nothing_changes(tmp_path):
    images = write_folder(tmp_path / "imgs", np.random.default_rng(3), ext=".jpg", per_class=2)
    build(tmp_path / "imgs", tmp_path / "db", "--encoded", "--workers", "0")
    for (_key, value), rel in zip(read_db(tmp_path / "db"), sorted(images)):
        fields = parse_datum_wire(value)
        assert fields["tags"] == ENCODED_TAGS and fields["encoded"] == 1
        assert fields["data"] == (tmp_path / "imgs" / rel).read_bytes()
        assert fields["label"] == images[rel][0]
    # --encode-type jpg matches .jpg files too: still the original bytes.
    build(tmp_path / "imgs", tmp_path / "db2", "--encode-type", "jpg", "--workers", "0")
    assert read_db(tmp_path / "db2") == read_db(tmp_path / "db")


def test_reencoded_png_and_resized_jpeg(tmp_path):
    images = write_folder(tmp_path / "imgs", np.random.default_rng(4), ext=".jpg", per_class=2)
    build(tmp_path / "imgs", tmp_path / "png", "--encode-type", "png", "--workers", "0")
    for (_key, value), rel in zip(read_db(tmp_path / "png"), sorted(images)):
        fields = parse_datum_wire(value)
        assert fields["tags"] == ENCODED_TAGS and fields["data"][:8] == b"\x89PNG\r\n\x1a\n"
        decoded = cv2.imdecode(np.frombuffer(fields["data"], np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(decoded, images[rel][1])  # lossless: the decoded JPEG pixels
    build(tmp_path / "imgs", tmp_path / "jpg", "--encode-type", "jpg", "--resize", "6x8", "--workers", "0")
    for (_key, value), rel in zip(read_db(tmp_path / "jpg"), sorted(images)):
        fields = parse_datum_wire(value)
        resized = cv2.resize(images[rel][1], (8, 6), interpolation=cv2.INTER_LINEAR)
        ok, expected = cv2.imencode(".jpg", resized)  # OpenCV defaults: quality 95, like Caffe
        assert fields["tags"] == ENCODED_TAGS and fields["data"] == expected.tobytes()
    source = CaffeLmdb(tmp_path / "jpg")
    assert source[0]["data"].shape == (3, 6, 8)
    build(tmp_path / "imgs", tmp_path / "gray", "--encode-type", "png", "--gray", "--workers", "0")
    for (_key, value), rel in zip(read_db(tmp_path / "gray"), sorted(images)):
        payload = parse_datum_wire(value)["data"]
        decoded = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(decoded, cv2.imread(str(tmp_path / "imgs" / rel), cv2.IMREAD_GRAYSCALE))
    assert CaffeLmdb(tmp_path / "gray")[0]["data"].shape == (1, 12, 16)


def test_unreadable_images_are_skipped_with_gaps_and_reported(tmp_path):
    write_folder(tmp_path / "img", np.random.default_rng(5), classes=("x",), per_class=3)
    (tmp_path / "img" / "x" / "bad.png").write_bytes(b"not an image")
    lines = ["x/000.png 0", "x/missing.png 1", "x/001.png 0", "x/bad.png 1", "x/002.png 2"]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    out = build(tmp_path / "list.txt", tmp_path / "db", "--root", f"{tmp_path}/img/", "--workers", "0")
    keys = [k for k, _ in read_db(tmp_path / "db")]
    assert keys == [b"00000000_x/000.png", b"00000002_x/001.png", b"00000004_x/002.png"]  # line_id gaps
    report = (tmp_path / "db" / "skipped.txt").read_text().splitlines()
    assert [line.split("\t")[1:3] for line in report] == [["1", "x/missing.png"], ["3", "x/bad.png"]]
    assert "skipped 2 unreadable" in out
    code, _, err = cli_output(["build-lmdb", tmp_path / "list.txt", tmp_path / "strict", "--root",
                               f"{tmp_path}/img/", "--strict", "--workers", "0", "-q"])
    assert code == 1 and "missing.png" in err
    assert not (tmp_path / "strict").exists()  # never a complete-looking output


def test_check_size_names_the_odd_record(tmp_path):
    write_folder(tmp_path / "imgs", np.random.default_rng(6), per_class=2, sizes=((12, 16), (10, 16)))
    code, _, err = cli_output(["build-lmdb", tmp_path / "imgs", tmp_path / "db", "--check-size", "-q",
                               "--workers", "0"])
    assert code == 1 and "00000001_cat/001.png" in err
    build(tmp_path / "imgs", tmp_path / "ok", "--check-size", "--resize", "8x8", "--workers", "0")


def test_existing_output_is_refused_unless_force(tmp_path):
    write_folder(tmp_path / "imgs", np.random.default_rng(7), per_class=1)
    build(tmp_path / "imgs", tmp_path / "db", "--workers", "0")
    code, _, err = cli_output(["build-lmdb", tmp_path / "imgs", tmp_path / "db", "-q", "--workers", "0"])
    assert code == 1 and "already exists" in err
    build(tmp_path / "imgs", tmp_path / "db", "--force", "--gray", "--workers", "0")
    assert parse_datum_wire(read_db(tmp_path / "db")[0][1])["channels"] == 1


def test_shuffle_and_val_split_are_reproducible_per_class(tmp_path):
    write_folder(tmp_path / "imgs", np.random.default_rng(8), classes=("a", "b", "c"), per_class=8)

    def keys(name, *extra):
        build(tmp_path / "imgs", tmp_path / name, "--workers", "0", *extra)
        return {split: [k for k, _ in read_db(tmp_path / name / f"{split}_lmdb")] for split in ("train", "val")}

    first = keys("s1", "--shuffle", "--seed", "5", "--val-fraction", "0.25")
    assert first == keys("s2", "--shuffle", "--seed", "5", "--val-fraction", "0.25")
    assert first != keys("s3", "--shuffle", "--seed", "6", "--val-fraction", "0.25")
    names = {split: [k.split(b"_", 1)[1].decode() for k in ks] for split, ks in first.items()}
    assert sorted(names["train"] + names["val"]) == sorted(f"{c}/{i:03d}.png" for c in "abc" for i in range(8))
    for c in "abc":  # round(8 * 0.25) = 2 per class go to val
        assert sum(n.startswith(c) for n in names["val"]) == 2
    for ks in first.values():  # keys numbered 0.. in each database
        assert [int(k[:8]) for k in ks] == list(range(len(ks)))
    assert names["train"] != sorted(names["train"])  # shuffled


def test_mean_files_match_numpy_and_compute_mean(tmp_path):
    images = write_folder(tmp_path / "imgs", np.random.default_rng(9), per_class=3)
    out = build(tmp_path / "imgs", tmp_path / "db", "--mean", "--workers", "0")
    expected = np.mean([img.transpose(2, 0, 1).astype(np.float64) for _, img in images.values()], axis=0)
    mean = read_mean_file(tmp_path / "db" / "mean.binaryproto")
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-4)
    blob = BlobProto.FromString((tmp_path / "db" / "mean.binaryproto").read_bytes())
    assert [blob.HasField(f) for f in ("num", "channels", "height", "width", "shape")] == [True] * 4 + [False]
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 12, 16)
    np.testing.assert_array_equal(np.load(tmp_path / "db" / "mean.npy"), mean)
    for c in range(3):  # the printed mean_value lines, BGR order
        assert f"mean_value: {expected[c].mean():.6g}" in out
    code, _, _ = cli_output(["compute-mean", tmp_path / "db", tmp_path / "m.binaryproto", "-q"])
    assert code == 0
    assert (tmp_path / "m.binaryproto").read_bytes() == (tmp_path / "db" / "mean.binaryproto").read_bytes()


def test_fill_noise_depends_only_on_the_seed(tmp_path, no_leaks):
    write_folder(tmp_path / "imgs", np.random.default_rng(10), per_class=2)
    args = ["--resize", "16x16", "--resize-mode", "fill"]
    build(tmp_path / "imgs", tmp_path / "a", "--workers", "0", "--seed", "1", *args)
    build(tmp_path / "imgs", tmp_path / "b", "--workers", "2", "--seed", "1", *args)
    build(tmp_path / "imgs", tmp_path / "c", "--workers", "0", "--seed", "2", *args)
    assert read_db(tmp_path / "a") == read_db(tmp_path / "b")  # worker count does not matter
    assert read_db(tmp_path / "a") != read_db(tmp_path / "c")
    pixels = raw_pixels(parse_datum_wire(read_db(tmp_path / "a")[0][1]))
    assert pixels.shape == (3, 16, 16)


def test_real_photos_with_a_space_in_the_name(tmp_path, shared_data):
    photos = shared_data / "photos"
    (tmp_path / "list.txt").write_text("cat.jpg 0\ncat gray.jpg 1\n")
    build(tmp_path / "list.txt", tmp_path / "raw", "--root", f"{photos}/", "--workers", "0")
    out = build(tmp_path / "list.txt", tmp_path / "enc", "--root", f"{photos}/", "--encoded", "--workers", "0")
    raw, enc = read_db(tmp_path / "raw"), read_db(tmp_path / "enc")
    assert [k for k, _ in raw] == [b"00000000_cat.jpg", b"00000001_cat gray.jpg"]
    for (_key, value), name in zip(raw, ("cat.jpg", "cat gray.jpg")):
        expected = cv2.imread(str(photos / name), cv2.IMREAD_COLOR)  # grey file -> 3 channels
        np.testing.assert_array_equal(raw_pixels(parse_datum_wire(value)), expected.transpose(2, 0, 1))
    # As convert_imageset --encoded: both files kept byte for byte (Caffe's key set), the grey one named with
    # what a reader must set; read with force_color it decodes to the dataset's 3 channels.
    assert [k for k, _ in enc] == [b"00000000_cat.jpg", b"00000001_cat gray.jpg"]
    for (_key, value), name in zip(enc, ("cat.jpg", "cat gray.jpg")):
        assert parse_datum_wire(value)["data"] == (photos / name).read_bytes()
    assert "force_color" in out
    np.testing.assert_array_equal(CaffeLmdb(tmp_path / "enc", mode="color")[1]["data"],
                                  cv2.imread(str(photos / "cat gray.jpg"), cv2.IMREAD_COLOR).transpose(2, 0, 1))
    build(tmp_path / "list.txt", tmp_path / "re", "--root", f"{photos}/", "--encoded", "--reencode", "--workers", "0")
    re_db = read_db(tmp_path / "re")
    assert re_db[0] == enc[0]  # the colour JPEG is still the original file
    payload = parse_datum_wire(re_db[1][1])["data"]
    ok, expected = cv2.imencode(".jpg", cv2.imread(str(photos / "cat gray.jpg"), cv2.IMREAD_COLOR))
    assert payload == expected.tobytes()  # 3 channels, OpenCV's default JPEG quality (Caffe's re-encode)
    assert CaffeLmdb(tmp_path / "re")[1]["data"].shape[0] == 3


@pytest.mark.parametrize("bad", [["--shard", "3/3"], ["--resize", "0x4"]])
def test_bad_arguments_stop_the_parser(tmp_path, bad):
    with pytest.raises(SystemExit) as exc:
        cli_output(["build-lmdb", tmp_path, tmp_path / "out", *bad])
    assert exc.value.code == 2


def test_bad_option_values_name_the_parameter(tmp_path):
    write_folder(tmp_path / "imgs", np.random.default_rng(11), per_class=1)
    code, _, err = cli_output(["build-lmdb", tmp_path / "imgs", tmp_path / "out", "--val-fraction", "1.5"])
    assert code == 1 and "val_fraction=1.5" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
