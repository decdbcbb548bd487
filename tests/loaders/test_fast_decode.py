"""decode_scale: auto / --fast-decode: JPEGs decoded at a reduced DCT scale before a 2x-or-more resize."""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

from feedstock.caffe_pb import Datum
from feedstock.loaders import jpeg
from feedstock.stream import Stream, add_stream_arguments, stream_from_args, stream_from_mapping
from feedstock.writers import LmdbWriter


def _photo(i: int, h: int = 480, w: int = 640) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x + 3 * i) % 256, (y * 2) % 256, ((x * y) >> 7) % 256], -1).astype(np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 1.5)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    """The same six 640x480 JPEGs as an encoded LMDB and as a folder of two classes."""
    root = tmp_path_factory.mktemp("fast")
    with LmdbWriter(str(root / "lmdb")) as w:
        for i in range(6):
            data = cv2.imencode(".jpg", _photo(i), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            d = Datum(channels=3, height=480, width=640, data=data, label=i % 2, encoded=True)
            w.put_datum(i, None, d)
            folder = root / "folder" / f"c{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.jpg").write_bytes(data)
    return root


def _all(stream: Stream) -> np.ndarray:
    with stream.build_loader("test", copy=True) as loader:
        return np.concatenate([b["data"] for b in loader])


@pytest.mark.parametrize("kind", ["lmdb", "folder"])
def test_reduced_decode_keeps_shapes_and_stays_close(jpegs, kind, monkeypatch):
    scales = []
    real = jpeg.decode_jpeg
    monkeypatch.setattr(jpeg, "decode_jpeg", lambda d, m, rgb, scale=1: scales.append(scale) or real(d, m, rgb, scale))
    kw = dict(source=str(jpegs / kind), new_height=110, new_width=150, batch_size=3, workers=0)
    exact = _all(Stream(**kw))
    assert set(scales) == {1}
    scales.clear()
    fast = _all(Stream(**kw, decode_scale="auto"))
    assert set(scales) == {4}  # 480x640 -> 120x160 still covers 110x150; 1/8 would not
    assert fast.shape == exact.shape == (6, 3, 110, 150)
    diff = np.abs(fast.astype(np.float64) - exact)
    assert 0 < diff.mean() < 4  # not Caffe's pixels, but the same pictures
    scales.clear()
    near = _all(Stream(**dict(kw, new_height=300, new_width=400), decode_scale="auto"))
    assert set(scales) == {1}  # shrinking less than 2x: decoded exactly
    np.testing.assert_array_equal(near, _all(Stream(**dict(kw, new_height=300, new_width=400))))


def test_without_a_resize_decode_scale_changes_nothing(jpegs):
    kw = dict(source=str(jpegs / "lmdb"), crop_size=64, batch_size=3, workers=0)
    np.testing.assert_array_equal(_all(Stream(**kw, decode_scale="auto")), _all(Stream(**kw)))


def test_flag_and_key_forms():
    p = argparse.ArgumentParser()
    add_stream_arguments(p)
    assert stream_from_args(p.parse_args(["x.lmdb", "--fast-decode"])).decode_scale == "auto"
    assert stream_from_args(p.parse_args(["x.lmdb"])).decode_scale == 1
    assert stream_from_mapping({"source": "x", "decode_scale": "auto"}).decode_scale == "auto"
    assert stream_from_mapping({"source": "x", "decode_scale": 1}).decode_scale == 1
    for bad in (2, "fast", True, 0.5):
        with pytest.raises(ValueError, match="decode_scale.*must be auto"):
            stream_from_mapping({"source": "x", "decode_scale": bad})
    assert "decode_scale" in Stream(source="x", decode_scale="auto").changed()
