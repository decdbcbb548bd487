"""The fused crop + mirror + ``(x - mean) * scale`` write into a float32 output row.

uint8 input goes plane by plane: the crop of one channel (split out of HWC
memory with ``cv2.split`` when the CHW array is a view of HWC), flipped with
``cv2.flip`` into a small scratch plane when mirrored, then mapped through that
channel's 256-entry float32 table with ``cv2.LUT`` straight into the output
plane. A table entry is ``(float32(v) - mean_c) * scale`` computed with the
same float32 operations as the arithmetic, so the results are bit-identical to
it. Mean images and float input take a float32 arithmetic path. :func:`write_batch`
does the same arithmetic over a whole (N, C, H, W) batch (no crop offsets drawn, no mirror).
"""
from __future__ import annotations

import threading
from typing import List, Optional, Tuple

import cv2
import numpy as np

_CV_MAX_CHANNELS = 512


class Scratch:
    """Per-thread reusable buffers (no steady-state allocation); dropped when pickled."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, name: str, shape: Tuple[int, ...], dtype=np.uint8) -> np.ndarray:
        bufs = self._local.__dict__.setdefault("bufs", {})
        buf = bufs.get(name)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = bufs[name] = np.empty(shape, dtype=dtype)
        return buf

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._local = threading.local()


def build_luts(channels: int, values: Optional[np.ndarray], scale: np.float32) -> np.ndarray:
    """(C, 256) float32 tables: ``(v - mean_c) * scale``, or ``v * scale`` without means."""
    v = np.arange(256, dtype=np.float32)
    if values is None:
        row = v * scale
        return np.ascontiguousarray(np.broadcast_to(row, (channels, 256)))
    return (v[None, :] - values.astype(np.float32)[:, None]) * scale


def uint8_planes(src: np.ndarray, scratch: Scratch) -> List[np.ndarray]:
    """One 2-D uint8 array per channel of a CHW view, each with unit column stride (what OpenCV takes)."""
    c = src.shape[0]
    if src.strides[2] == 1:
        return [src[i] for i in range(c)]
    buf = scratch.get("planes", src.shape, np.uint8)
    planes = [buf[i] for i in range(c)]
    if src.strides[0] == 1 and src.strides[2] == c and c <= _CV_MAX_CHANNELS:
        # a CHW view of HWC memory: de-interleave with one OpenCV pass
        got = cv2.split(src.transpose(1, 2, 0), planes)
        if all(g is p for g, p in zip(got, planes)):
            return planes
    np.copyto(buf, src)
    return planes


def _into(result: np.ndarray, dst: np.ndarray) -> None:
    """OpenCV silently allocates when ``dst`` does not fit; copy back in that case."""
    if result is not dst:
        np.copyto(dst, result)


def write_uint8(src: np.ndarray, out: np.ndarray, *, mirror: bool, luts: Optional[np.ndarray],
                mean: Optional[np.ndarray], scale: np.float32, scratch: Scratch, arith: bool = False,
                values: Optional[np.ndarray] = None) -> None:
    """uint8 CHW crop -> float32 ``out``: table lookup (``luts``) or ``(x - mean) * scale`` (mean image).

    ``mean`` is the mean crop already in output order (flipped when mirrored). ``arith``: instead
    of the tables, OpenCV's float arithmetic with the per-channel ``values`` (None: no means) and
    ``scale``, 4-5x faster than ``cv2.LUT`` into float32 and bit-identical to the tables: each
    operation rounds once to float32, as the tables' entries do (tests/transforms/test_fused_arith.py).
    """
    flip = scratch.get("flip", src.shape[1:], np.uint8) if mirror else None
    for c, plane in enumerate(uint8_planes(src, scratch)):
        if flip is not None:
            _into(cv2.flip(plane, 1, dst=flip), flip)
            plane = flip
        dst = out[c]
        if arith and mean is None:
            _arith(plane, dst, None if values is None else float(np.float32(values[c])), float(scale))
        elif luts is not None:
            _into(cv2.LUT(plane, luts[c], dst=dst), dst)
        else:
            assert mean is not None  # no lookup tables only with a mean image
            np.copyto(dst, plane, casting="unsafe")
            np.subtract(dst, mean[c], out=dst)
            if scale != 1:
                np.multiply(dst, scale, out=dst)


def _arith(plane: np.ndarray, dst: np.ndarray, value: Optional[float], scale: float) -> None:
    """``dst = (float32(plane) - value) * scale`` with OpenCV (the scalar travels as a double holding the
    float32 value exactly: the subtraction and the product are exact in double, then rounded once).
    Planes of a few pixels go through numpy: OpenCV's bindings read a (4, 1) array as a scalar."""
    if plane.size < 16:
        np.copyto(dst, plane, casting="unsafe")
        if value is not None:
            np.subtract(dst, np.float32(value), out=dst)
        if scale != 1:
            np.multiply(dst, np.float32(scale), out=dst)
        return
    if value is not None:
        _into(cv2.subtract(plane, (value, 0.0, 0.0, 0.0), dst=dst, dtype=cv2.CV_32F), dst)  # type: ignore[call-overload]  # a Scalar
        if scale != 1:
            _into(cv2.multiply(dst, (scale, 0.0, 0.0, 0.0), dst=dst), dst)
    else:
        _into(cv2.multiply(plane, (scale, 0.0, 0.0, 0.0), dst=dst, dtype=cv2.CV_32F), dst)


def write_float(src: np.ndarray, out: np.ndarray, *, mirror: bool, values: Optional[np.ndarray],
                mean: Optional[np.ndarray], scale: np.float32) -> None:
    """Float CHW crop -> float32 ``out`` = ``(float32(x) - mean) * scale`` (mean in output order)."""
    np.copyto(out, src[:, :, ::-1] if mirror else src, casting="unsafe")
    center_and_scale(out, values=values, mean=mean, scale=scale)


def center_and_scale(data: np.ndarray, *, values: Optional[np.ndarray], mean: Optional[np.ndarray],
                     scale: np.float32) -> None:
    """In place on float32 ``data``: subtract the mean image or per-channel values, then scale."""
    if mean is not None:
        np.subtract(data, mean, out=data)
    elif values is not None:
        np.subtract(data, values.reshape(-1, 1, 1), out=data)
    if scale != 1:
        np.multiply(data, scale, out=data)


def write_batch(x: np.ndarray, *, values: Optional[np.ndarray], mean: Optional[np.ndarray],
                scale: np.float32) -> np.ndarray:
    """(N, C, H, W) -> new float32 ``(float32(x) - mean) * scale``, bit-identical to the per-row writes.

    Element for element these are the float32 operations of a table entry
    (:func:`build_luts`) and of :func:`write_float` / the mean-image path; a
    multiplication by 1 is exact, so skipping it changes nothing.
    """
    data = x.astype(np.float32)
    center_and_scale(data, values=values, mean=mean, scale=scale)
    return data
