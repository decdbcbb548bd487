"""feedstock.transforms: preprocessing and augmentation run in the workers, ``(sample, rng) -> sample``."""
from .base import Compose, Transform, as_compose, to_chw, to_hwc, write_rows
from .caffe import CaffeTransform
from .color import Color, Gray, SwapChannels
from .crop import CenterCrop, RandomCrop
from .layout import ToCHW
from .mean import MeanSubtract
from .mirror import Mirror
from .multiscale import Multiscale
from .occlude import Occlude, occlude_batch
from .pad import Pad
from .prototxt import parse_prototxt
from .resize import Resize
from .scale import Scale, ToFloat

__all__ = [
    "CaffeTransform", "CenterCrop", "Color", "Compose", "Gray", "MeanSubtract", "Mirror",
    "Multiscale", "Occlude", "Pad", "RandomCrop", "Resize", "Scale", "SwapChannels", "ToCHW",
    "ToFloat", "Transform", "as_compose", "occlude_batch", "parse_prototxt", "to_chw", "to_hwc",
    "write_rows",
]
