"""Palette indices of an 8-bit palette PNG, decoded by OpenCV (libpng) instead of Pillow.

An 8-bit palette PNG stores one index byte per pixel, exactly the layout of an
8-bit greyscale PNG. Rewriting the IHDR colour type to greyscale and keeping only
IHDR, IDAT and IEND (PLTE, tRNS, bKGD... describe the palette) gives a PNG that
``cv2.imdecode(IMREAD_UNCHANGED)`` returns as the indices themselves: several
times faster than Pillow's ``Image.open`` per mask (bench/bench_pairs.py). Other
bit depths (1, 2, 4: libpng would scale them as grey) answer None; the caller
then uses Pillow.
"""
from __future__ import annotations

import struct
import zlib
from typing import Optional

import cv2
import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KEEP = (b"IHDR", b"IDAT", b"IEND")
_PALETTE, _GREY = 3, 0


def as_greyscale_png(data: bytes) -> Optional[bytes]:
    """The same pixels as an 8-bit greyscale PNG, or None when ``data`` is not an 8-bit palette PNG."""
    if data[:8] != _SIGNATURE or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    if data[24] != 8 or data[25] != _PALETTE:  # bit depth, colour type
        return None
    parts = [_SIGNATURE]
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return None  # truncated: let the full decoder say so
        if kind == b"IHDR":
            body = bytearray(data[pos + 8 : pos + 8 + length])
            body[9] = _GREY
            parts.append(data[pos : pos + 8] + bytes(body) + struct.pack(">I", zlib.crc32(b"IHDR" + body)))
        elif kind in _KEEP:
            parts.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break
    return b"".join(parts)


def palette_indices(data: bytes) -> Optional[np.ndarray]:
    """HxW uint8 palette indices of an 8-bit palette PNG via OpenCV; None when it cannot (use Pillow)."""
    grey = as_greyscale_png(data)
    if grey is None:
        return None
    out = cv2.imdecode(np.frombuffer(grey, np.uint8), cv2.IMREAD_UNCHANGED)
    if out is None or out.ndim != 2 or out.dtype != np.uint8:
        return None
    return out
