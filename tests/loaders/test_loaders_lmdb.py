"""CaffeLmdb: raw, float and encoded Datums, key order, shared environments, bad records."""
from __future__ import annotations

import os
import pickle

import cv2
import lmdb
import numpy as np
import pytest

from feedstock.caffe_pb import Datum, array_to_datum, encoded_datum
from feedstock.errors import RecordError
from feedstock.fixtures.synthetic import make_encoded_lmdb, make_raw_lmdb
from feedstock.loaders import CaffeLmdb
from feedstock.loaders.caffe_lmdb import release_env
from feedstock.spec import ArraySpec
from feedstock.writers import LmdbWriter


def _write(path, items):
    with LmdbWriter(path) as w:
        for key, value in items:
            w.put(key, value)


def test_raw_uint8_values_labels_and_keys(tmp_path):
    images, labels = make_raw_lmdb(str(tmp_path / "db"), np.random.default_rng(0), 7, (3, 4, 5))
    src = CaffeLmdb(tmp_path / "db")
    assert len(src) == 7
    for i in range(7):
        sample = src[i]
        assert sample["data"].dtype == np.uint8 and sample["data"].shape == (3, 4, 5)
        np.testing.assert_array_equal(sample["data"], images[i])
        assert sample["label"].dtype == np.int64 and sample["label"].shape == () and sample["label"] == labels[i]
    assert src.raw_key(2) == b"00000002_img2.png"
    assert src.key(2) == f"{tmp_path / 'db'}:00000002_img2.png"
    assert src.spec() == {"data": ArraySpec((3, 4, 5), np.uint8), "label": ArraySpec((), np.int64)}


def test_records_in_key_byte_order(tmp_path):
    keys = [b"b", b"a", b"10", b"9", b"\xff", b"A"]
    _write(tmp_path / "db", [(k, array_to_datum(np.full((1, 1, 1), n, np.uint8), n).SerializeToString())
                             for n, k in enumerate(keys)])
    src = CaffeLmdb(tmp_path / "db")
    assert [src.raw_key(i) for i in range(len(src))] == sorted(keys)
    assert [int(src[i]["label"]) for i in range(len(src))] == [keys.index(k) for k in sorted(keys)]
    assert src.key(5).endswith(":\\xff")


def test_convert_imageset_bytes_read_exactly(tmp_path):
    # The value convert_imageset writes for a 3x32x32 image with label 1 (docs/caffe-compat.md, "Datum and BlobProto"), built by hand.
    pixels = np.arange(3072, dtype=np.int64).astype(np.uint8)
    value = bytes([0x08, 3, 0x10, 32, 0x18, 32, 0x22, 0x80, 0x18]) + pixels.tobytes() + bytes([0x28, 1, 0x38, 0])
    _write(tmp_path / "db", [("00000000_cat.png", value)])
    sample = CaffeLmdb(tmp_path / "db")[0]
    np.testing.assert_array_equal(sample["data"], pixels.reshape(3, 32, 32))
    assert int(sample["label"]) == 1


def test_float_datums_are_float32(tmp_path):
    arr = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 2, 2)
    _write(tmp_path / "db", [("0", array_to_datum(arr, 4).SerializeToString())])
    src = CaffeLmdb(tmp_path / "db")
    assert src[0]["data"].dtype == np.float32
    np.testing.assert_array_equal(src[0]["data"], arr)
    assert src.spec()["data"] == ArraySpec((3, 2, 2), np.float32)


def test_data_wins_over_float_data(tmp_path):
    d = array_to_datum(np.full((1, 1, 2), 7, np.uint8), 0)
    d.float_data.extend([0.5, 0.25])
    _write(tmp_path / "db", [("0", d.SerializeToString())])
    np.testing.assert_array_equal(CaffeLmdb(tmp_path / "db")[0]["data"], [[[7, 7]]])


def _bgra_png(rng):
    img = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    return img, cv2.imencode(".png", img)[1].tobytes()


@pytest.mark.parametrize("mode, flag, channels", [
    ("color", cv2.IMREAD_COLOR, 3), ("gray", cv2.IMREAD_GRAYSCALE, 1), ("native", cv2.IMREAD_UNCHANGED, 4),
])
def test_encoded_png_modes_match_opencv(tmp_path, mode, flag, channels):
    img, payload = _bgra_png(np.random.default_rng(1))
    _write(tmp_path / "db", [("00000000_x.png", encoded_datum(payload, 3).SerializeToString())])
    src = CaffeLmdb(tmp_path / "db", mode=mode)
    sample = src[0]
    expected = cv2.imdecode(np.frombuffer(payload, np.uint8), flag)
    expected = expected[:, :, None] if expected.ndim == 2 else expected
    assert sample["data"].shape == (channels, 5, 6)
    np.testing.assert_array_equal(sample["data"], expected.transpose(2, 0, 1))
    if mode == "native":
        np.testing.assert_array_equal(sample["data"], img.transpose(2, 0, 1))  # PNG is lossless, BGRA kept
    assert int(sample["label"]) == 3
    assert src.spec()["data"] == ArraySpec(({"color": 3, "gray": 1, "native": None}[mode], None, None), np.uint8)


def test_encoded_jpeg_photo_decodes_like_caffe(tmp_path, shared_data):
    photo = shared_data / "photos" / "cat.jpg"
    payload = photo.read_bytes()
    # DIGITS-style: channels/height/width set on an encoded datum; decoding must not trust them.
    _write(tmp_path / "db", [("0", encoded_datum(payload, 1, shape=(1, 2, 3)).SerializeToString())])
    data = CaffeLmdb(tmp_path / "db", mode="color")[0]["data"]
    assert data.shape == (3, 360, 480)
    np.testing.assert_array_equal(data, cv2.imread(str(photo), cv2.IMREAD_COLOR).transpose(2, 0, 1))


def test_encoded_lmdb_from_generator_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (4 + k, 3, 3), dtype=np.uint8) for k in range(3)]
    make_encoded_lmdb(str(tmp_path / "db"), images, [0, 1, 2])
    src = CaffeLmdb(tmp_path / "db", mode="color")
    for k in range(3):
        np.testing.assert_array_equal(src[k]["data"], images[k].transpose(2, 0, 1))


def test_two_sources_on_one_path_share_the_environment(tmp_path):
    make_raw_lmdb(str(tmp_path / "db"), np.random.default_rng(3), 4, (1, 2, 2))
    os.symlink(tmp_path / "db", tmp_path / "alias")
    a, b = CaffeLmdb(tmp_path / "db"), CaffeLmdb(tmp_path / "alias")
    c = CaffeLmdb(tmp_path / "db" / "data.mdb")
    for i in range(4):
        np.testing.assert_array_equal(a[i]["data"], b[i]["data"])
        np.testing.assert_array_equal(a[i]["data"], c[i]["data"])
    d = pickle.loads(pickle.dumps(a))  # a third source on the same path, same process
    np.testing.assert_array_equal(d[3]["data"], a[3]["data"])


def test_release_env_then_read_again(tmp_path):
    images, _ = make_raw_lmdb(str(tmp_path / "db"), np.random.default_rng(4), 3, (1, 2, 2))
    src = CaffeLmdb(tmp_path / "db")
    src[0]
    release_env(str(tmp_path / "db"))
    np.testing.assert_array_equal(src[2]["data"], images[2])


def test_raw_arrays_are_read_only_views(tmp_path):
    make_raw_lmdb(str(tmp_path / "db"), np.random.default_rng(5), 1, (1, 2, 2))
    data = CaffeLmdb(tmp_path / "db")[0]["data"]
    with pytest.raises(ValueError):
        data[0, 0, 0] = 1


@pytest.mark.parametrize("value, message", [
    (b"\xff\xff\xff", "not a Caffe Datum"),
    (Datum(channels=3, height=2, width=2, data=b"abcd").SerializeToString(), "C,H,W"),
    (Datum(channels=1, height=2, width=2, float_data=[1.0]).SerializeToString(), "holds 1 values"),
    (encoded_datum(b"not an image", 0).SerializeToString(), "cannot decode"),
    (Datum(label=3).SerializeToString(), "no pixels"),
])
def test_bad_records_raise_record_error_naming_the_key(tmp_path, value, message):
    good = array_to_datum(np.zeros((1, 1, 1), np.uint8), 0).SerializeToString()
    _write(tmp_path / "db", [("00000000_ok", good), ("00000001_bad", value)])
    src = CaffeLmdb(tmp_path / "db", mode="color")
    src[0]
    with pytest.raises(RecordError, match=message) as info:
        src[1]
    assert info.value.key == f"{tmp_path / 'db'}:00000001_bad"


def test_open_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        CaffeLmdb(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot open LMDB"):
        CaffeLmdb(tmp_path / "empty")
    make_raw_lmdb(str(tmp_path / "db"), np.random.default_rng(6), 1, (1, 1, 1))
    with pytest.raises(ValueError, match="mode="):
        CaffeLmdb(tmp_path / "db", mode="rgb")


def test_empty_database(tmp_path):
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 20)
    env.close()
    src = CaffeLmdb(tmp_path / "db")
    assert len(src) == 0
    with pytest.raises(IndexError):
        src[0]
    with pytest.raises(ValueError, match="empty"):
        src.spec()


# ----- read_batch: the Loader's vectorised read -------------------------------------------------
def test_read_batch_equals_the_records_stacked_bit_for_bit(tmp_path):
    images, labels = make_raw_lmdb(str(tmp_path / "db"), np.random.default_rng(7), 9, (3, 4, 5))
    src = CaffeLmdb(tmp_path / "db")
    order = [8, 0, 3, 3, -1]
    batch = src.read_batch(np.asarray(order))
    assert batch["data"].dtype == np.uint8 and batch["data"].shape == (5, 3, 4, 5)
    np.testing.assert_array_equal(batch["data"], images[order])
    np.testing.assert_array_equal(batch["data"], np.stack([src[i]["data"] for i in order]))
    assert batch["label"].dtype == np.int64 and batch["label"].tolist() == labels[order].tolist()
    with pytest.raises(ValueError):
        batch["data"][0, 0, 0, 0] = 1  # a read-only view, like the records
    with pytest.raises(IndexError, match="out of range"):
        src.read_batch([0, 9])


@pytest.mark.parametrize("second", [
    encoded_datum(cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))[1].tobytes(), 1),  # encoded
    Datum(channels=1, height=2, width=2, float_data=[1.0, 2.0, 3.0, 4.0]),  # float_data
    array_to_datum(np.zeros((1, 4, 1), np.uint8), 1),  # same byte count, another shape
])
def test_read_batch_declines_records_it_cannot_stack(tmp_path, second):
    first = array_to_datum(np.full((1, 2, 2), 9, np.uint8), 0)
    _write(tmp_path / "db", [("0", first.SerializeToString()), ("1", second.SerializeToString())])
    src = CaffeLmdb(tmp_path / "db", mode="color")
    assert src.read_batch([0, 1]) is NotImplemented
    assert src.read_batch([0, 0])["data"].shape == (2, 1, 2, 2)


@pytest.mark.parametrize("value, message", [
    (b"\xff\xff\xff", "not a Caffe Datum"),
    (Datum(channels=1, height=2, width=2, data=b"abc").SerializeToString(), "C,H,W"),
])
def test_read_batch_names_a_bad_record(tmp_path, value, message):
    good = array_to_datum(np.zeros((1, 2, 2), np.uint8), 0).SerializeToString()
    _write(tmp_path / "db", [("00000000_ok", good), ("00000001_bad", value), ("00000002_ok", good)])
    with pytest.raises(RecordError, match=message) as info:
        CaffeLmdb(tmp_path / "db").read_batch([0, 1, 2])
    assert info.value.key == f"{tmp_path / 'db'}:00000001_bad"


def test_decode_seconds_count_encoded_records_only(tmp_path):
    make_raw_lmdb(str(tmp_path / "raw"), np.random.default_rng(8), 2, (1, 2, 2))
    rng = np.random.default_rng(9)
    make_encoded_lmdb(str(tmp_path / "enc"), [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)] * 2, [0, 1])
    raw, enc = CaffeLmdb(tmp_path / "raw"), CaffeLmdb(tmp_path / "enc")
    raw[0], raw.read_batch([0, 1]), enc[0], enc[1]
    assert raw.decode_s == 0.0 and enc.decode_s > 0.0
