"""CHW <-> HWC: the image layout conversions that loaders, transforms and writers share.

Images travel as CHW arrays (Caffe's layout). Sources that decode with OpenCV
hand out CHW *views* of the HWC buffer, so a transform that needs HWC gets it back
without a copy. Ground floor: imports numpy only, so a loader never imports a
transform for them.
"""
from __future__ import annotations

import numpy as np


def to_hwc(chw: np.ndarray) -> np.ndarray:
    """HWC view/copy of a CHW image; free when the CHW array is a view of HWC memory."""
    return np.ascontiguousarray(chw.transpose(1, 2, 0))


def to_chw(hwc: np.ndarray) -> np.ndarray:
    """CHW view of an HWC image (no copy); 2-D input becomes one channel."""
    if hwc.ndim == 2:
        hwc = hwc[:, :, None]
    return hwc.transpose(2, 0, 1)
