"""The JPEG decoder choice never changes pixels or facing; the opt-in reduced decode's scale rule."""
from __future__ import annotations

import glob
import io

import cv2
import numpy as np
import pytest

from feedstock.errors import RecordError
from feedstock.loaders import jpeg
from feedstock.loaders.decode import decode_image

PHOTOS = sorted(glob.glob("/work/shared/data/photos/*.jpg"))
FLAGS = {"color": cv2.IMREAD_COLOR, "gray": cv2.IMREAD_GRAYSCALE, "native": cv2.IMREAD_UNCHANGED}
# EXIF orientation -> what it does to the stored pixels (the EXIF 2.3 table), as numpy on HWC
FACING = {
    1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, -1)[::-1],
    8: lambda a: np.rot90(a, 1),
}


@pytest.fixture(params=["opencv", "simplejpeg"])
def decoder(request):
    if request.param == "simplejpeg":
        pytest.importorskip("simplejpeg")
    choice = jpeg.choose(force=request.param)
    assert choice.name == request.param, choice.reason
    yield request.param
    jpeg._choice = None  # the next test measures again


def _picture(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4, y * 5, (x + y) * 2], -1).astype(np.uint8)  # asymmetric: every flip shows


def exif_jpeg(orientation: int, *, gray: bool = False, big_endian: bool = False) -> bytes:
    from PIL import Image

    rgb = _picture()[..., ::-1]
    im = Image.fromarray(rgb[..., 0].copy() if gray else rgb.copy())
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw = exif.tobytes()
    if big_endian:  # Pillow writes little-endian TIFF: build the big-endian block by hand
        import struct

        ifd = struct.pack(">HHHII", 1, 0x0112, 3, 1, orientation << 16) + b"\0\0\0\0"
        raw = b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + ifd
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, exif=raw)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("gray", [False, True])
def test_every_exif_orientation_faces_as_opencv_turns_it(decoder, orientation, gray):
    data = exif_jpeg(orientation, gray=gray)
    upright = cv2.imdecode(np.frombuffer(exif_jpeg(1, gray=gray), np.uint8), cv2.IMREAD_COLOR)
    for mode in ("color", "gray", "native"):
        want = cv2.imdecode(np.frombuffer(data, np.uint8), FLAGS[mode])
        got = decode_image(data, mode=mode, key="o.jpg")
        assert np.array_equal(got.transpose(1, 2, 0).reshape(want.shape), want), (mode, orientation)
        rgb = decode_image(data, mode=mode, rgb=True, key="o.jpg")
        assert np.array_equal(rgb[::-1] if rgb.shape[0] == 3 else rgb, got)
    # the facing itself, against the EXIF table (not only against OpenCV): colour applies it, native not
    color = decode_image(data, mode="color").transpose(1, 2, 0)
    assert np.array_equal(color, FACING[orientation](upright))
    assert np.array_equal(decode_image(data, mode="native").transpose(1, 2, 0)[..., :1].shape[:2], upright.shape[:2])


@pytest.mark.skipif(not PHOTOS, reason="no shared photos on this machine")
@pytest.mark.parametrize("path", PHOTOS)
def test_real_photos_decode_bit_identically(decoder, path):
    data = open(path, "rb").read()
    for mode in ("color", "gray", "native"):
        want = cv2.imdecode(np.frombuffer(data, np.uint8), FLAGS[mode])
        got = decode_image(data, mode=mode, key=path).transpose(1, 2, 0)
        assert np.array_equal(got.reshape(want.shape), want), mode


def test_layouts_and_bad_files_match_opencv(decoder):
    img = _picture(61, 83)
    cases = [cv2.imencode(".jpg", img, p)[1].tobytes() for p in (
        [cv2.IMWRITE_JPEG_QUALITY, 60], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
        [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422])]
    for data in cases:
        for mode in FLAGS:
            want = cv2.imdecode(np.frombuffer(data, np.uint8), FLAGS[mode])
            assert np.array_equal(decode_image(data, mode=mode).transpose(1, 2, 0).reshape(want.shape), want)
    with pytest.raises(RecordError, match="bad.jpg"):
        decode_image(cases[0][:3] + b"\0" * 40, key="bad.jpg")
    truncated = cases[0][: len(cases[0]) // 2]  # OpenCV decodes what is there (grey below): so do we
    want = cv2.imdecode(np.frombuffer(truncated, np.uint8), cv2.IMREAD_COLOR)
    if want is not None:
        assert np.array_equal(decode_image(truncated, key="t.jpg").transpose(1, 2, 0), want)


def test_exif_orientation_parser():
    assert jpeg.exif_orientation(np.frombuffer(exif_jpeg(6, big_endian=True), np.uint8)) == 6
    assert jpeg.exif_orientation(np.frombuffer(exif_jpeg(3), np.uint8)) == 3
    plain = cv2.imencode(".jpg", _picture())[1]
    assert jpeg.exif_orientation(plain) == 1
    good = exif_jpeg(6)
    at = good.index(b"Exif\x00\x00") + 6
    broken = good[:at] + b"XX" + good[at + 2 :]  # neither II nor MM
    assert jpeg.exif_orientation(np.frombuffer(broken, np.uint8)) == 0  # unreadable: OpenCV decides


def test_choice_is_reported_and_can_be_forced(monkeypatch):
    monkeypatch.setenv(jpeg.ENV, "opencv")
    jpeg._choice = None
    try:
        choice = jpeg.choose()
        assert (choice.name, choice.module) == ("opencv", None) and choice.mps > 0
        monkeypatch.setenv(jpeg.ENV, "turbo")
        jpeg._choice = None
        with pytest.raises(ValueError, match=jpeg.ENV):
            jpeg.choose()
    finally:
        jpeg._choice = None


@pytest.mark.parametrize("size,target,scale", [
    ((375, 500), (256, 256), 1), ((1000, 1000), (256, 256), 2), ((1100, 2100), (256, 256), 4),
    ((2048, 2048), (256, 256), 8), ((2040, 4000), (256, 256), 4), ((2041, 4000), (256, 256), 8), ((513, 600), (256, 300), 2)])
def test_scale_is_the_largest_that_still_covers_the_target(size, target, scale):
    assert jpeg.scale_for(*size, target) == scale
    h, w = size
    assert -(-h // scale) >= target[0] and -(-w // scale) >= target[1]


@pytest.mark.parametrize("orientation", [1, 6])
def test_reduced_decode_keeps_target_size_and_facing(decoder, orientation):
    from PIL import Image

    big = cv2.resize(_picture(), (640, 480), interpolation=cv2.INTER_LINEAR)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(big[..., ::-1].copy()).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    data = buf.getvalue()
    full = decode_image(data, mode="color")
    reduced = decode_image(data, mode="color", target=(100, 100))
    assert reduced.shape[1:] == (-(-full.shape[1] // 4), -(-full.shape[2] // 4))  # 480x640 -> scale 4
    want = cv2.resize(full.transpose(1, 2, 0), reduced.shape[:0:-1], interpolation=cv2.INTER_AREA)
    assert np.abs(want.astype(int) - reduced.transpose(1, 2, 0)).mean() < 8  # same picture, same facing
    native = decode_image(data, mode="native", target=(100, 100))
    assert native.shape == (3, 120, 160)  # native ignores EXIF, at any scale
    assert decode_image(data, mode="color", target=(300, 300)).shape == full.shape  # < 2x: exact decode


def test_env_unset_auto_choice_is_exact(monkeypatch):
    jpeg._choice = None
    monkeypatch.delenv(jpeg.ENV, raising=False)
    choice = jpeg.choose()
    assert choice.name in ("opencv", "simplejpeg") and choice.reason
    jpeg._choice = None
