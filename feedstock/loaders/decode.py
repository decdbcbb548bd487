"""Image decoding with OpenCV as Caffe does it: BGR channel order, CHW views of the HWC buffer.

Modes follow Caffe: ``"color"`` = imread COLOR / force_color (always 3 channels,
grey replicated, alpha dropped), ``"gray"`` = GRAYSCALE / force_gray (1 channel),
``"native"`` = IMREAD_UNCHANGED (the file's own channel count, 4 for BGRA PNGs).
The CHW result is ``hwc.transpose(2, 0, 1)``: no copy, and a transform that needs
HWC gets it back for free (``feedstock.chw.to_hwc``).
"""
from __future__ import annotations

import io
import os
from typing import Optional, Tuple, Union

import cv2
import numpy as np

from ..caffe_pb import Datum, datum_to_array
from ..chw import to_chw
from ..errors import RecordError
from . import jpeg

MODES = ("color", "gray", "native")
_FLAGS = {"color": cv2.IMREAD_COLOR, "gray": cv2.IMREAD_GRAYSCALE, "native": cv2.IMREAD_UNCHANGED}
_RGB_SWAP = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")

Buffer = Union[bytes, bytearray, memoryview, np.ndarray]

# Process-level fact, not configuration: the pid in which OpenCV threads were last
# limited. Forked children inherit it, so the check re-runs once per new process.
_opencv_limited_pid = -1


def limit_opencv_threads() -> None:
    """``cv2.setNumThreads(1)`` once per process: worker processes must not spawn thread pools."""
    global _opencv_limited_pid
    pid = os.getpid()
    if _opencv_limited_pid != pid:
        cv2.setNumThreads(1)
        _opencv_limited_pid = pid


def check_mode(mode: str) -> str:
    if mode not in _FLAGS:
        raise ValueError(f"mode={mode!r} must be one of {MODES}")
    return mode


def force_mode(force_color: bool, force_gray: bool) -> str:
    """The decode mode of Caffe's ``force_color``/``force_gray`` for encoded Datums: else their own channels."""
    return "color" if force_color else "gray" if force_gray else "native"


def color_mode(color: bool) -> str:
    """The decode mode of the ``color=`` flag that image sources take (Caffe's ``is_color``)."""
    return "color" if color else "gray"


def channels_of(mode: str) -> int | None:
    """Channel count a mode guarantees; ``None`` for native (known only per file)."""
    return {"color": 3, "gray": 1}.get(check_mode(mode))


def decode_image(buf: Buffer, *, mode: str = "color", rgb: bool = False, key: str = "<buffer>",
                 target: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Decode an encoded image (JPEG/PNG/BMP/PPM bytes) to a uint8 CHW view; RecordError names ``key``.

    JPEGs go through this process's fastest exact decoder (:mod:`.jpeg`: same pixels as
    ``cv2.imdecode``). ``target`` (h, w), for a stream that resizes to it afterwards and opted
    in (``decode_scale: auto``), decodes a JPEG at least twice that size at a reduced DCT scale
    (1/2, 1/4, 1/8) that still covers it: faster, but not Caffe's pixels.
    """
    flags = _FLAGS[check_mode(mode)]
    limit_opencv_threads()
    data = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf
    if jpeg.is_jpeg(data):
        scale = jpeg.reduced_scale(data, mode, target) if target is not None else 1
        hwc, in_rgb = jpeg.decode_jpeg(data, mode, rgb, scale)
        rgb = rgb and not in_rgb
    else:
        hwc = cv2.imdecode(data, flags) if data.size else None
    if hwc is None:
        raise RecordError(key, f"cannot decode image ({data.size} bytes; not a JPEG/PNG/BMP/PPM?)")
    if hwc.dtype != np.uint8:
        # Caffe's CVMatToDatum CHECKs CV_8U; 16-bit PNGs only survive IMREAD_UNCHANGED.
        raise RecordError(key, f"image has dtype {hwc.dtype}; only 8-bit images are supported")
    if rgb and hwc.ndim == 3 and hwc.shape[2] in _RGB_SWAP:
        hwc = cv2.cvtColor(hwc, _RGB_SWAP[hwc.shape[2]])
    return to_chw(hwc)


def read_bytes(path: str) -> bytes:
    """The whole file; a missing or unreadable file is a RecordError naming the path."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise RecordError(path, f"cannot read image file: {e.strerror or e}") from None


def read_image(path: str, *, mode: str = "color", rgb: bool = False,
               target: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Read and decode an image file to uint8 CHW (BGR unless ``rgb``), as Caffe's ReadImageToCVMat.

    The bytes are read in Python and decoded with ``cv2.imdecode`` (same decoder and
    flags as ``cv2.imread``) so that a missing file gives the OS error, not ``None``.
    """
    return decode_image(read_bytes(path), mode=mode, rgb=rgb, key=path, target=target)


def _is_palette_png(data: bytes) -> bool:
    # PNG signature (8) + IHDR length/type (8) + width/height (8) + bit depth (1): colour type at 25.
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 and data[25] == 3


def read_mask(path: str) -> np.ndarray:
    """A segmentation mask file as uint8 (1, H, W); see :func:`decode_mask`."""
    return decode_mask(read_bytes(path), key=path)


def decode_mask(data: bytes, *, key: str = "<buffer>") -> np.ndarray:
    """An encoded segmentation mask as uint8 (1, H, W), its values unchanged (class ids).

    Palette PNGs (PASCAL VOC style) keep their palette *indices*, read with Pillow;
    OpenCV would expand the palette to colours. Anything else is read unchanged
    (8-bit grey); a colour mask whose channels differ is an error, never converted.
    """
    if not _is_palette_png(data):
        chw = decode_image(data, mode="native", key=key)
        if chw.shape[0] > 1:
            if chw.shape[0] == 4 or (chw != chw[:1]).any():
                raise RecordError(key, f"mask has {chw.shape[0]} colour channels; expected a palette PNG "
                                  "or an 8-bit grey image of class ids (colours are never converted)")
            chw = chw[:1]
        return chw
    from .palette_png import palette_indices

    fast = palette_indices(data)  # 8-bit palettes through libpng: several times faster than Pillow
    if fast is not None:
        return to_chw(fast)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            indices = np.asarray(im.convert("P") if im.mode != "P" else im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise RecordError(key, f"cannot decode palette PNG mask: {e}") from None
    return to_chw(indices)


def decode_datum(datum: Datum, *, mode: str = "native", key: str = "<datum>",
                 target: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """A Datum's pixels as CHW: raw uint8/float32 as stored, encoded payloads decoded (Caffe's Transform).

    ``mode`` applies to encoded datums only (force_color / force_gray / native), as in Caffe,
    which ignores force_* for raw datums.
    """
    if datum.encoded:
        return decode_image(datum.data, mode=mode, key=key, target=target)
    if datum.channels * datum.height * datum.width == 0:
        shape = (datum.channels, datum.height, datum.width)
        raise RecordError(key, f"raw datum has no pixels (channels, height, width = {shape})")
    try:
        return datum_to_array(datum)
    except ValueError as e:
        raise RecordError(key, str(e)) from None
