"""The segmentation (image + mask) transform chain of a pairs stream, TRAIN and TEST.

TRAIN: RandomScale(scales, aspect kept) -> Pad (below/right: image ``pad_value``,
mask ``ignore_label``) to the crop, or without a crop to the largest size a
scaled image can have -> RandomCrop(crop_size) -> Mirror (p=0.5) -> the mask
becomes ``label`` -> Caffe's ``(x - mean) * scale`` into float32.
TEST: scale 1, no mirror; Pad to the crop (then CenterCrop) or, without a crop,
to the largest image of the source (the whole image, top-left, the rest padded
with ``ignore_label``: a fixed batch shape for any batch size).

Geometric steps draw once per sample and move image and mask together (see
``_aligned``); the mask is only ever resized nearest-neighbour and padded with
``ignore_label``, so its values stay class ids. ``pad_value`` is in input pixel
units (before mean subtraction: pad with the mean to get 0 after it). A
``mean_file`` gives its per-channel means: a full mean image cannot line up with
rescaled, padded crops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..caffe_pb import read_mean_file
from ..spec import Sample, Spec
from ._aligned import MASK
from .base import Transform
from .caffe import CaffeTransform, parse_phase
from .crop import CenterCrop, RandomCrop
from .mirror import Mirror
from .multiscale import RandomScale, check_scales
from .pad import Pad

LABEL = "label"


class MaskToLabel(Transform):
    """Rename the ``mask`` field to ``label`` (the top name Caffe's FCN data layers give it)."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if MASK not in sample:
            raise ValueError(f"MaskToLabel needs a {MASK!r} field (fields: {sorted(sample)})")
        out = {k: v for k, v in sample.items() if k != MASK}
        out[LABEL] = sample[MASK]
        return out

    def output_spec(self, spec: Spec) -> Spec:
        if MASK not in spec:
            raise ValueError(f"MaskToLabel needs a {MASK!r} field (fields: {sorted(spec)})")
        out = {k: v for k, v in spec.items() if k != MASK}
        out[LABEL] = spec[MASK]
        return out

    def __repr__(self) -> str:
        return "MaskToLabel()"


@dataclass(frozen=True)
class PairsConfig:
    """The settings of the pairs chain (Stream keys), validated at construction."""

    scales: Tuple[float, ...] = ()
    crop_size: int = 0
    mirror: bool = False
    pad_value: float = 0.0
    ignore_label: int = 255
    scale: float = 1.0
    mean_value: Tuple[float, ...] = ()
    mean_file: Optional[str] = None
    force_color: bool = False
    force_gray: bool = False

    def __post_init__(self) -> None:
        if self.scales:
            object.__setattr__(self, "scales", check_scales(self.scales))
        if isinstance(self.crop_size, bool) or not isinstance(self.crop_size, int) or self.crop_size < 0:
            raise ValueError(f"crop_size={self.crop_size!r} must be a non-negative integer")
        pad = self.pad_value
        if isinstance(pad, bool) or not isinstance(pad, (int, float)) or not 0 <= pad <= 255:
            raise ValueError(f"pad_value={pad!r} must be a number in [0, 255] (input pixel units)")
        ignore = self.ignore_label
        if isinstance(ignore, bool) or not isinstance(ignore, int) or not 0 <= ignore <= 255:
            raise ValueError(f"ignore_label={ignore!r} must be an integer in [0, 255] (masks are 8-bit)")
        if self.mean_file is not None and len(self.mean_value):
            raise ValueError(f"mean_file={self.mean_file!r} and mean_value={self.mean_value!r} are exclusive")

    def max_scale(self, phase: int) -> float:
        return max(self.scales) if (self.scales and phase == 0) else 1.0


def _mean_values(config: PairsConfig) -> Sequence[float]:
    if config.mean_file is None:
        return tuple(config.mean_value)
    return tuple(float(v) for v in read_mean_file(config.mean_file).mean(axis=(1, 2), dtype=np.float64))


def pad_target(config: PairsConfig, phase: int, max_hw: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """The size every sample is padded to: the crop, else the largest (scaled) image."""
    if config.crop_size:
        return config.crop_size, config.crop_size
    if max_hw is None:
        raise ValueError("without crop_size the pairs chain needs the largest image size (max_hw)")
    s = config.max_scale(phase)
    return math.ceil(max_hw[0] * s), math.ceil(max_hw[1] * s)


def build_pairs_transforms(config: PairsConfig, phase: int | str,
                           max_hw: Optional[Tuple[int, int]] = None) -> List[Transform]:
    """The chain for ``phase``; ``max_hw`` = (H, W) of the largest image, needed without a crop."""
    phase = parse_phase(phase)
    train = phase == 0
    chain: List[Transform] = []
    if train and config.scales and config.scales != (1.0,):
        chain.append(RandomScale(config.scales))
    chain.append(Pad(pad_target(config, phase, max_hw), config.pad_value, mask_fill=config.ignore_label,
                     anchor="top_left"))
    if config.crop_size:
        chain.append(RandomCrop(config.crop_size) if train else CenterCrop(config.crop_size))
    if train and config.mirror:
        chain.append(Mirror())
    chain.append(MaskToLabel())
    chain.append(CaffeTransform(phase=phase, scale=config.scale, mean_value=_mean_values(config),
                                force_color=config.force_color, force_gray=config.force_gray))
    return chain


def pairs_config(stream: Any) -> PairsConfig:
    """The transform settings of a Stream's pairs chain."""
    if stream.occlude:
        raise ValueError("occlude=True does not apply to pairs (it would blank the image, not the mask)")
    return PairsConfig(scales=tuple(stream.scales), crop_size=int(stream.crop_size), mirror=bool(stream.mirror),
                       pad_value=stream.pad_value, ignore_label=stream.ignore_label, scale=stream.scale,
                       mean_value=tuple(stream.mean_value), mean_file=stream.mean_file,
                       force_color=bool(stream.force_color), force_gray=bool(stream.force_gray))


def pairs_transforms(stream: Any, phase: Union[int, str], source: Any = None) -> List[Transform]:
    """The TRAIN or TEST chain of a pairs Stream (see the module docstring); the stream adds ``to_range``.

    Without ``crop_size`` every sample is padded to the largest image (times the
    largest TRAIN scale), read from the image headers of ``source`` (built from
    the stream when not given).
    """
    from ..loaders.pairs_source import max_image_hw

    config = pairs_config(stream)
    max_hw = None
    if not config.crop_size:
        max_hw = max_image_hw(source if source is not None else stream.build_source())
    return build_pairs_transforms(config, phase, max_hw)
