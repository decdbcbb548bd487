"""The JPEG decoder, chosen once per process by measurement, with OpenCV's pixels as the rule.

``cv2.imdecode`` defines the pixels (Caffe decodes with OpenCV). ``simplejpeg``
(libjpeg-turbo into a numpy array, no OpenCV Mat in between) is used instead only
when, in this process, it decodes a set of check images bit-identically to OpenCV in
every mode and is faster on them; otherwise, or when it is not installed, OpenCV
decodes. ``FEEDSTOCK_JPEG_DECODER=opencv`` forces OpenCV (``simplejpeg`` forces it
when it passes the identity check).

EXIF orientation: OpenCV rotates/flips ``IMREAD_COLOR`` and ``IMREAD_GRAYSCALE``
results by the EXIF Orientation tag; simplejpeg never does. A JPEG whose EXIF block
holds an orientation other than 1 (or one this module cannot read) is therefore
always decoded by OpenCV: the decoder choice never changes which way an image faces.
Files libjpeg-turbo rejects strictly (truncated data, CMYK) also go to OpenCV.
"""
from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Optional, Tuple

import cv2
import numpy as np

ENV = "FEEDSTOCK_JPEG_DECODER"
SCALES = (8, 4, 2)  # libjpeg's power-of-two DCT scales, largest first
_REDUCED = {
    ("color", 2): cv2.IMREAD_REDUCED_COLOR_2, ("color", 4): cv2.IMREAD_REDUCED_COLOR_4,
    ("color", 8): cv2.IMREAD_REDUCED_COLOR_8, ("gray", 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    ("gray", 4): cv2.IMREAD_REDUCED_GRAYSCALE_4, ("gray", 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def is_jpeg(data: np.ndarray) -> bool:
    return data.size > 3 and data[0] == 0xFF and data[1] == 0xD8 and data[2] == 0xFF


def exif_orientation(data: np.ndarray) -> int:
    """The EXIF Orientation of a JPEG: 1 when there is no EXIF block or no tag, the tag's value when
    there is one, 0 when an EXIF block cannot be read (the caller then lets OpenCV decide)."""
    raw = memoryview(data)  # type: ignore[arg-type]
    pos, end = 2, len(raw)
    while pos + 4 <= end:
        if raw[pos] != 0xFF:
            return 1 if pos > 2 else 0  # not a marker where one must be: leave it to OpenCV
        marker = raw[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no EXIF before the pixels
            return 1
        length = (raw[pos + 2] << 8) | raw[pos + 3]
        if marker == 0xE1 and bytes(raw[pos + 4 : pos + 10]) == b"Exif\x00\x00":
            return _tiff_orientation(bytes(raw[pos + 10 : pos + 2 + length]))
        pos += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for k in range(count):
            tag, kind = struct.unpack_from(order + "HH", tiff, ifd + 2 + 12 * k)
            if tag == 0x0112:
                return struct.unpack_from(order + "H", tiff, ifd + 10 + 12 * k)[0] if kind == 3 else 0
    except (KeyError, struct.error):
        return 0
    return 1


def jpeg_size(data: np.ndarray) -> Optional[Tuple[int, int, int]]:
    """(height, width, components) as the file stores them, from its SOF marker; None when there is
    none before the scan."""
    raw = memoryview(data)  # type: ignore[arg-type]
    pos, end = 2, len(raw)
    while pos + 9 <= end and raw[pos] == 0xFF:
        marker = raw[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xDA, 0xD9):
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return (raw[pos + 5] << 8) | raw[pos + 6], (raw[pos + 7] << 8) | raw[pos + 8], raw[pos + 9]
        pos += 2 + ((raw[pos + 2] << 8) | raw[pos + 3])
    return None


def reduced_scale(data: np.ndarray, mode: str, target: Tuple[int, int]) -> int:
    """The DCT scale for a decode that is then resized to ``target`` (h, w) by the stream: 1 unless the
    JPEG is at least twice the target both ways (as it will face: EXIF orientations 5-8 swap the axes)."""
    size = jpeg_size(data) if is_jpeg(data) else None
    if size is None:
        return 1
    h, w, _ = size
    orientation = exif_orientation(data)
    if orientation == 0:  # unreadable EXIF: which way OpenCV turns it is unknown here
        return 1
    if orientation >= 5:
        h, w = w, h
    return scale_for(h, w, target)


def scale_for(height: int, width: int, target: Tuple[int, int]) -> int:
    """The largest DCT scale (8, 4, 2; 1 for none) whose decode is still at least ``target`` (h, w)."""
    for s in SCALES:
        if -(-height // s) >= target[0] and -(-width // s) >= target[1]:
            return s
    return 1


def _opencv(data: np.ndarray, mode: str, scale: int) -> Optional[np.ndarray]:
    flags = {"color": cv2.IMREAD_COLOR, "gray": cv2.IMREAD_GRAYSCALE, "native": cv2.IMREAD_UNCHANGED}[mode]
    if scale > 1 and mode == "native":  # no REDUCED_UNCHANGED: the file's own channels, its own facing
        size = jpeg_size(data)
        flags = _REDUCED[("gray" if size and size[2] == 1 else "color", scale)] | cv2.IMREAD_IGNORE_ORIENTATION
    elif scale > 1:
        flags = _REDUCED[(mode, scale)]
    return cv2.imdecode(data, flags)


def _simplejpeg(sj: ModuleType, data: np.ndarray, mode: str, rgb: bool, scale: int) -> Optional[np.ndarray]:
    """simplejpeg's decode of what OpenCV gives in ``mode`` (BGR unless ``rgb``); None where it must not
    be used (EXIF orientation, a colour space OpenCV converts itself, a strict libjpeg error)."""
    if mode != "native" and exif_orientation(data) != 1:
        return None  # IMREAD_UNCHANGED ignores EXIF orientation; the other modes apply it
    try:
        h, w, space, _ = sj.decode_jpeg_header(data)
        if space not in ("YCbCr", "Gray"):
            return None
        gray = mode == "gray" or (mode == "native" and space == "Gray")
        colorspace = "GRAY" if gray else "RGB" if rgb else "BGR"
        if scale > 1:
            return sj.decode_jpeg(data, colorspace, min_height=-(-h // scale), min_width=-(-w // scale))
        return sj.decode_jpeg(data, colorspace)
    except ValueError:
        return None


@dataclass
class Choice:
    """This process's JPEG decoder, why, and its measured single-core rates (megapixels per second)."""

    name: str
    reason: str
    mps: float = 0.0
    opencv_mps: float = 0.0
    module: Optional[ModuleType] = None  # simplejpeg when it is the choice


_choice: Optional[Choice] = None
_choice_pid = -1


def _check_images() -> list:
    """Small JPEGs of every layout OpenCV writes (4:2:0, 4:4:4, grey, progressive, odd sizes)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:77, 0:93]
    base = np.stack([(x * 2 + y) % 256, (y * 3) % 256, (x ^ y) % 256], -1).astype(np.uint8)
    img = np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)
    out = []
    for params in ([cv2.IMWRITE_JPEG_QUALITY, 90], [cv2.IMWRITE_JPEG_QUALITY, 75, cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
                   [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]):
        out.append(cv2.imencode(".jpg", img, params)[1])
    out.append(cv2.imencode(".jpg", img[..., 1])[1])
    return out


def _identical(sj: ModuleType) -> bool:
    for data in _check_images():
        for mode in ("color", "gray", "native"):
            for scale in (1, 2):
                want = _opencv(data, mode, scale)
                got = _simplejpeg(sj, data, mode, False, scale)
                if got is None or want is None or got.reshape(want.shape).tobytes() != want.tobytes():
                    return False
    return True


def _rate(fn: Callable[[np.ndarray], object], data: np.ndarray, megapixels: float, rounds: int = 7) -> float:
    """MP/s of this thread's CPU time (not wall time: on a shared machine other processes' load
    would decide the choice), best of ``rounds``."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.thread_time()
        fn(data)
        fn(data)
        best = min(best, (time.thread_time() - t0) / 2)
    return megapixels / max(best, 1e-9)


def choose(force: Optional[str] = None) -> Choice:
    """The decoder of this process (checked once per process; ``force`` or $FEEDSTOCK_JPEG_DECODER
    = "opencv" | "simplejpeg" | "auto" overrides the measurement, never the identity check)."""
    global _choice, _choice_pid
    if _choice is not None and _choice_pid == os.getpid() and force is None:
        return _choice
    want = (force or os.environ.get(ENV) or "auto").lower()
    if want not in ("auto", "opencv", "simplejpeg"):
        raise ValueError(f"{ENV}={want!r} must be auto, opencv or simplejpeg")
    y, x = np.mgrid[0:256, 0:256]
    photo = cv2.GaussianBlur(((x * 7 + y * 3) % 256).astype(np.uint8), (0, 0), 2)
    probe = cv2.imencode(".jpg", cv2.merge([photo, photo.T, 255 - photo]), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    cv_rate = _rate(lambda d: cv2.imdecode(d, cv2.IMREAD_COLOR), probe, 0.065536)
    choice = Choice("opencv", "forced by " + ENV if want == "opencv" else "", cv_rate, cv_rate)
    if want != "opencv":
        try:
            import simplejpeg as sj
        except ImportError:
            choice.reason = "simplejpeg is not installed"
        else:
            if not _identical(sj):
                choice.reason = "simplejpeg's pixels differ from OpenCV's here"
            else:
                sj_rate = _rate(lambda d: sj.decode_jpeg(d, "BGR"), probe, 0.065536)
                if want == "simplejpeg" or sj_rate > cv_rate:
                    choice = Choice("simplejpeg", "bit-identical to OpenCV, faster" if sj_rate > cv_rate
                                    else "forced by " + ENV, sj_rate, cv_rate, sj)
                else:
                    choice.reason = "simplejpeg is bit-identical but not faster here"
    _choice, _choice_pid = choice, os.getpid()
    return choice


def describe() -> str:
    """One line for reports: the decoder this process chose, why, and its single-core MP/s."""
    c = choose()
    other = f" (OpenCV {c.opencv_mps:.0f})" if c.name != "opencv" else ""
    return f"JPEG decoder: {c.name}, {c.mps:.0f} MP/s per core{other}; {c.reason or 'the fallback'}"


def decode_jpeg(data: np.ndarray, mode: str, rgb: bool, scale: int = 1) -> Tuple[Optional[np.ndarray], bool]:
    """(HWC or HW uint8 or None as cv2.imdecode gives it, whether it is already in RGB order)."""
    choice = choose()
    if choice.module is not None:
        hwc = _simplejpeg(choice.module, data, mode, rgb, scale)
        if hwc is not None:
            return hwc, rgb
    return _opencv(data, mode, scale), False
