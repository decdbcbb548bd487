"""ImageFolder, ListFile and the OpenCV decode helpers, on generated files and the real photos."""
from __future__ import annotations

import os
import pickle

import cv2
import numpy as np
import pytest

from feedstock.errors import RecordError
from feedstock.loaders import ImageFolder, ListFile
from feedstock.loaders.decode import decode_image, read_image
from feedstock.loaders.list_file import read_list_file
from feedstock.loaders.strings import StringTable
from feedstock.spec import ArraySpec
from feedstock.transforms.base import to_hwc


def _img(path, rng, shape=(4, 5, 3)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return img


def test_image_folder_layout_rules(tmp_path):
    rng = np.random.default_rng(0)
    for rel in ["b/2.png", "b/1.PNG", "a/x.Jpg", "a/deep/er/y.bmp", "B/z.ppm", "a/notes.txt", "loose.png"]:
        if rel.endswith(".txt"):
            (tmp_path / rel).write_text("not an image")
        else:
            _img(tmp_path / rel, rng)
    os.symlink(tmp_path / "a" / "deep", tmp_path / "b" / "linked")  # followed, like os.walk(followlinks=True)
    src = ImageFolder(tmp_path)
    assert src.classes == ["B", "a", "b"]  # plain sort: upper case first
    rel = [os.path.relpath(src.path(i), tmp_path) for i in range(len(src))]
    assert rel == ["B/z.ppm", "a/deep/er/y.bmp", "a/x.Jpg", "b/1.PNG", "b/2.png", "b/linked/er/y.bmp"]
    assert src.labels.tolist() == [0, 1, 1, 2, 2, 2]
    assert [int(src[i]["label"]) for i in range(len(src))] == [0, 1, 1, 2, 2, 2]


def test_image_folder_pixels_are_bgr_chw_views(tmp_path):
    img = _img(tmp_path / "c" / "0.png", np.random.default_rng(1), (6, 7, 3))
    src = ImageFolder(tmp_path)
    data = src[0]["data"]
    np.testing.assert_array_equal(data, img.transpose(2, 0, 1))
    assert not data.flags.c_contiguous and np.shares_memory(to_hwc(data), data)  # HWC back for free
    assert src.spec() == {"data": ArraySpec((3, None, None), np.uint8), "label": ArraySpec((), np.int64)}
    rgb = ImageFolder(tmp_path, rgb=True)[0]["data"]
    np.testing.assert_array_equal(rgb, img[:, :, ::-1].transpose(2, 0, 1))
    gray = ImageFolder(tmp_path, color=False)
    assert gray[0]["data"].shape == (1, 6, 7) and gray.spec()["data"].shape == (1, None, None)
    # Caffe's is_color=false is imread GRAYSCALE (the codec's own conversion, not cvtColor).
    np.testing.assert_array_equal(gray[0]["data"][0], cv2.imread(gray.path(0), cv2.IMREAD_GRAYSCALE))


def test_image_folder_paths_are_one_compact_table(tmp_path):
    for k in range(5):
        _img(tmp_path / "c" / f"{k}.png", np.random.default_rng(k))
    src = ImageFolder(tmp_path)
    tables = [v for v in vars(src).values() if isinstance(v, StringTable)]
    assert len(tables) == 1 and len(tables[0]) == 5
    assert not any(isinstance(v, list) and len(v) == 5 for v in vars(src).values())


def test_string_table_round_trips_odd_names():
    items = ["a b.jpg", "ü/ñ.png", os.fsdecode(b"\xff\xfe.png"), ""]
    table = pickle.loads(pickle.dumps(StringTable(items)))
    assert list(table) == items
    assert table.raw(2) == b"\xff\xfe.png"
    keys = StringTable([b"k\x00", b"\x00"])
    assert keys.raw(0) == b"k\x00" and keys.raw(1) == b"\x00"  # no NUL stripping, unlike numpy "S"


@pytest.mark.parametrize("layout, message", [
    ({}, "no class subfolders"),
    ({"a/readme.txt": "x"}, "no images"),
])
def test_image_folder_errors(tmp_path, layout, message):
    for rel, text in layout.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    with pytest.raises(ValueError, match=message):
        ImageFolder(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        ImageFolder(tmp_path / "missing")


def test_list_file_caffe_parsing(tmp_path):
    (tmp_path / "list.txt").write_bytes(
        b"dir/a b.jpg 3\r\n\n   \nc.png +4\nd.png\t-2\t 7\nweird\rname.png 5\n"
    )
    paths, labels = read_list_file(str(tmp_path / "list.txt"))
    # Last space splits; tabs stay in the path; a lone \r is not a line break (std::getline).
    assert paths == ["dir/a b.jpg", "c.png", "d.png\t-2\t", "weird\rname.png"]
    assert labels == [3, 4, 7, 5]
    src = ListFile(tmp_path / "list.txt", root="/data/img")  # plain concatenation: no separator added
    assert src.path(1) == "/data/img" + "c.png" and src.key(0) == "/data/imgdir/a b.jpg"
    assert src.labels.tolist() == [3, 4, 7, 5]


@pytest.mark.parametrize("content, message", [
    (b"ok.jpg 1\nnospace\n", r"list\.txt:2: expected '<path> <label>'"),
    (b"ok.jpg 1\n\nbad.jpg one\n", r"list\.txt:3: label 'one' is not an integer"),
    (b"trailing.jpg 1 \n", r"list\.txt:1: label '' is not an integer"),
    (b"x.jpg 1.5\n", r"list\.txt:1: label '1.5'"),
    (b"\n  \n", r"list\.txt' is empty"),
])
def test_list_file_errors_name_file_and_line(tmp_path, content, message):
    (tmp_path / "list.txt").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        ListFile(tmp_path / "list.txt")


def test_list_file_missing(tmp_path):
    with pytest.raises(ValueError, match="cannot read list file"):
        ListFile(tmp_path / "nope.txt")


def test_unreadable_images_raise_record_error_naming_the_path(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (tmp_path / "list.txt").write_text("broken.jpg 0\nmissing.jpg 1\n")
    src = ListFile(tmp_path / "list.txt", root=f"{tmp_path}/")
    with pytest.raises(RecordError, match="cannot decode") as info:
        src[0]
    assert info.value.key == f"{tmp_path}/broken.jpg"
    with pytest.raises(RecordError, match="cannot read image file") as info:
        src[1]
    assert info.value.key == f"{tmp_path}/missing.jpg"


def test_real_photos_through_a_list_file(tmp_path, shared_data):
    photos = shared_data / "photos"
    (tmp_path / "list.txt").write_text("cat gray.jpg 1\ncat.jpg 0\nfish-bike.jpg 2\n")
    src = ListFile(tmp_path / "list.txt", root=f"{photos}/")
    gray = src[0]["data"]
    assert src.key(0) == f"{photos}/cat gray.jpg"
    assert gray.shape[0] == 3  # color mode replicates a grey JPEG to 3 channels, as Caffe
    np.testing.assert_array_equal(gray[0], gray[1])
    np.testing.assert_array_equal(gray[1], gray[2])
    np.testing.assert_array_equal(gray, cv2.imread(str(photos / "cat gray.jpg")).transpose(2, 0, 1))
    assert src[1]["data"].shape == (3, 360, 480) and int(src[2]["label"]) == 2
    np.testing.assert_array_equal(src[1]["data"], cv2.imread(str(photos / "cat.jpg")).transpose(2, 0, 1))
    one = ListFile(tmp_path / "list.txt", root=f"{photos}/", color=False)[1]["data"]
    np.testing.assert_array_equal(one, cv2.imread(str(photos / "cat.jpg"), cv2.IMREAD_GRAYSCALE)[None])


def test_decode_modes_on_png_with_alpha_and_16_bit():
    bgra = np.random.default_rng(3).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    png = cv2.imencode(".png", bgra)[1].tobytes()
    assert decode_image(png, mode="native").shape == (4, 3, 4)
    np.testing.assert_array_equal(decode_image(png, mode="color"), bgra[:, :, :3].transpose(2, 0, 1))
    np.testing.assert_array_equal(decode_image(png, mode="native", rgb=True),
                                  bgra[:, :, [2, 1, 0, 3]].transpose(2, 0, 1))
    deep = cv2.imencode(".png", np.full((2, 2), 40000, np.uint16))[1].tobytes()
    with pytest.raises(RecordError, match="8-bit") as info:
        decode_image(deep, mode="native", key="k16")
    assert info.value.key == "k16"
    assert decode_image(deep, mode="color").dtype == np.uint8  # COLOR converts to 8 bit, like imread
    with pytest.raises(RecordError, match="cannot decode"):
        decode_image(b"", key="empty")
    with pytest.raises(ValueError, match="mode="):
        decode_image(png, mode="bgr")


def test_read_image_matches_imread_for_every_extension(tmp_path):
    img = np.random.default_rng(4).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".ppm"):
        path = str(tmp_path / f"x{ext}")
        cv2.imwrite(path, img)
        np.testing.assert_array_equal(read_image(path), cv2.imread(path).transpose(2, 0, 1))
