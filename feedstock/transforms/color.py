"""Channel transforms: SwapChannels (BGR <-> RGB), Gray and Color (OpenCV conversions)."""
from __future__ import annotations

import cv2
import numpy as np

from ..spec import Sample, Spec
from ._aligned import IMAGE, image_of, spec_hw
from .base import Transform, to_chw, to_hwc

_CV_DTYPES = (np.uint8, np.uint16, np.float32)


def swap_channels(x: np.ndarray) -> np.ndarray:
    """BGR <-> RGB of a CHW image (a view for 3 channels; alpha stays last for 4)."""
    c = x.shape[0]
    if c == 1:
        return x
    if c == 3:
        return x[::-1]
    if c == 4:
        return x[[2, 1, 0, 3]]
    raise ValueError(f"SwapChannels needs 1, 3 or 4 channels, got {c}")


def convert(x: np.ndarray, codes: dict, target: int, who: str) -> np.ndarray:
    """``cv2.cvtColor`` of a CHW image with the code for its channel count; a no-op at ``target``."""
    c = x.shape[0]
    if c == target:
        return x
    if c not in codes:
        raise ValueError(f"{who} cannot convert {c} channels (supported: {sorted(codes)} and {target})")
    if x.dtype not in _CV_DTYPES:
        raise ValueError(f"{who} supports dtypes uint8, uint16, float32, got {x.dtype}")
    return to_chw(cv2.cvtColor(to_hwc(x), codes[c]))


def to_gray(x: np.ndarray) -> np.ndarray:
    """OpenCV BGR(A) -> gray, 1 channel."""
    return convert(x, {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}, 1, "Gray")


def to_color(x: np.ndarray) -> np.ndarray:
    """OpenCV gray -> BGR (replicated) or BGRA -> BGR (alpha dropped, as IMREAD_COLOR), 3 channels."""
    return convert(x, {1: cv2.COLOR_GRAY2BGR, 4: cv2.COLOR_BGRA2BGR}, 3, "Color")


class _ChannelMap(Transform):
    channels_out: int = 0  # 0 = unchanged

    def map(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        out = dict(sample)
        out[IMAGE] = self.map(image_of(sample, type(self).__name__))
        return out

    def output_spec(self, spec: Spec) -> Spec:
        out = dict(spec)
        if IMAGE in spec and self.channels_out:
            _, h, w = spec_hw(spec[IMAGE], type(self).__name__)
            out[IMAGE] = spec[IMAGE].with_shape((self.channels_out, h, w))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SwapChannels(_ChannelMap):
    """Reverse the colour channels (BGR <-> RGB); a view, no copy."""

    def map(self, x: np.ndarray) -> np.ndarray:
        return swap_channels(x)


class Gray(_ChannelMap):
    """BGR/BGRA to one gray channel with OpenCV's weights; gray input passes through."""

    channels_out = 1

    def map(self, x: np.ndarray) -> np.ndarray:
        return to_gray(x)


class Color(_ChannelMap):
    """Gray to 3-channel BGR (OpenCV GRAY2BGR), BGRA to BGR; BGR passes through."""

    channels_out = 3

    def map(self, x: np.ndarray) -> np.ndarray:
        return to_color(x)
