"""Datum / BlobProto codec: byte-exact against the wire layouts of caffe.proto (docs/caffe-compat.md; built by hand here)."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from feedstock.caffe_pb import (
    BlobProto,
    Datum,
    array_to_blobproto,
    array_to_datum,
    blobproto_to_array,
    datum_to_array,
    encoded_datum,
    parse_datum,
    read_mean_file,
    write_mean_file,
)


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32 -> 10-byte two's complement varint, as protobuf does
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_varint_helper():
    assert varint(3072) == b"\x80\x18" and varint(1) == b"\x01" and len(varint(-1)) == 10


def test_raw_convert_imageset_datum_bytes():
    arr = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    expected = b"\x08\x03\x10\x20\x18\x20\x22\x80\x18" + arr.tobytes() + b"\x28\x01\x38\x00"
    assert array_to_datum(arr, 1, encoded_false=True).SerializeToString() == expected
    d = parse_datum(expected)
    assert (d.channels, d.height, d.width, d.label, d.encoded) == (3, 32, 32, 1, False)
    np.testing.assert_array_equal(datum_to_array(d), arr)


def test_pycaffe_datum_has_no_encoded_field():
    arr = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    expected = b"\x08\x01\x10\x02\x18\x03\x22\x06" + arr.tobytes() + b"\x28\x07"
    assert array_to_datum(arr, 7).SerializeToString() == expected
    assert array_to_datum(arr).SerializeToString() == expected[:-2]  # label None: field absent


def test_negative_label_is_a_ten_byte_varint():
    d = array_to_datum(np.zeros((1, 1, 1), np.uint8), -1)
    assert d.SerializeToString().endswith(b"\x28" + b"\xff" * 9 + b"\x01")
    assert parse_datum(d.SerializeToString()).label == -1


def test_float_datum_is_unpacked_and_packed_input_parses():
    values = np.array([0.5, -2.0, 3.25, 1e-3, 7.0, 8.5], dtype=np.float32)
    arr = values.reshape(1, 2, 3)
    head = b"\x08\x01\x10\x02\x18\x03"
    unpacked = head + b"".join(b"\x35" + struct.pack("<f", v) for v in values)
    assert array_to_datum(arr).SerializeToString() == unpacked
    packed = head + b"\x32" + varint(4 * len(values)) + values.astype("<f4").tobytes()
    for wire in (unpacked, packed):
        out = datum_to_array(parse_datum(wire))
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, arr)


def test_encoded_datum_bytes_with_and_without_shape():
    payload = bytes(range(200))
    convert_imageset = b"\x22" + varint(200) + payload + b"\x28\x05\x38\x01"
    assert encoded_datum(payload, 5).SerializeToString() == convert_imageset
    digits = b"\x08\x03\x10\x04\x18\x06" + convert_imageset
    assert encoded_datum(payload, 5, shape=(3, 4, 6)).SerializeToString() == digits
    d = parse_datum(convert_imageset)
    assert d.encoded and d.data == payload and (d.channels, d.height, d.width) == (0, 0, 0)
    with pytest.raises(ValueError, match="encoded"):
        datum_to_array(d)


def test_array_to_datum_rejects_non_chw():
    with pytest.raises(ValueError, match="3-D"):
        array_to_datum(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="holds"):
        datum_to_array(Datum(channels=2, height=2, width=2, data=b"abc"))


def test_blobproto_legacy_bytes_are_packed():
    mean = np.array([1.5, 2.0, -3.0, 4.25, 0.0, 6.0], dtype=np.float32).reshape(3, 1, 2)
    data = mean.astype("<f4").tobytes()
    expected = b"\x08\x01\x10\x03\x18\x01\x20\x02" + b"\x2a" + varint(len(data)) + data
    assert array_to_blobproto(mean).SerializeToString() == expected
    shape_only = b"\x2a" + varint(len(data)) + data + b"\x3a\x05\x0a\x03\x01\x03\x02"  # shape {dim: [1, 3, 2]} packed
    blob = BlobProto.FromString(shape_only)
    assert blobproto_to_array(blob).shape == (1, 3, 2)


def test_legacy_shape_wins_over_shape_field():
    blob = BlobProto(num=1, channels=2, height=1, width=3)
    blob.shape.dim.extend([6])
    blob.data.extend(range(6))
    assert blobproto_to_array(blob).shape == (1, 2, 1, 3)
    blob.ClearField("num"), blob.ClearField("channels"), blob.ClearField("height"), blob.ClearField("width")
    assert blobproto_to_array(blob).shape == (6,)


def test_double_data_preferred_and_count_checked():
    blob = BlobProto(num=1, channels=1, height=1, width=2)
    blob.data.extend([9.0, 9.0])
    blob.double_data.extend([1.0, 2.0])
    np.testing.assert_array_equal(blobproto_to_array(blob).ravel(), [1.0, 2.0])
    blob.ClearField("double_data")
    blob.data.append(3.0)
    with pytest.raises(ValueError, match="holds 3"):
        blobproto_to_array(blob)


def test_mean_file_round_trip(tmp_path):
    mean = np.random.default_rng(1).uniform(0, 255, (3, 4, 5)).astype(np.float32)
    write_mean_file(tmp_path / "mean.binaryproto", mean)
    raw = (tmp_path / "mean.binaryproto").read_bytes()
    assert raw.startswith(b"\x08\x01\x10\x03\x18\x04\x20\x05\x2a")  # legacy 1x3x4x5 like compute_image_mean
    back = read_mean_file(tmp_path / "mean.binaryproto")
    assert back.dtype == np.float32 and back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, mean)
    shape_style = array_to_blobproto(mean, legacy=False).SerializeToString()  # Blob::ToProto style
    (tmp_path / "new.binaryproto").write_bytes(shape_style)
    np.testing.assert_array_equal(read_mean_file(tmp_path / "new.binaryproto"), mean)


def test_bad_mean_files_name_the_path(tmp_path):
    with pytest.raises(ValueError, match="cannot read mean file"):
        read_mean_file(tmp_path / "missing.binaryproto")
    (tmp_path / "junk").write_bytes(b"\xff\xff\xff\xff")
    with pytest.raises(ValueError, match="junk.*not a valid BlobProto"):
        read_mean_file(tmp_path / "junk")
    blob = array_to_blobproto(np.zeros((2, 1, 1, 1), np.float32))
    (tmp_path / "two").write_bytes(blob.SerializeToString())
    with pytest.raises(ValueError, match="num=2"):
        read_mean_file(tmp_path / "two")
