"""LabeledImages: the shared body of image-file sources (image folders, Caffe list files)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ..spec import ArraySpec, Sample, Spec
from .base import Source, as_label
from .decode import channels_of, color_mode, read_image
from .strings import StringTable


class LabeledImages(Source):
    """Image files with integer labels; yields ``{"data": uint8 CHW, "label": int64}``.

    Paths live in one :class:`StringTable`, labels in one int64 array. Images are
    decoded with OpenCV in BGR (``rgb=True`` swaps to RGB); ``color=False`` reads
    one grey channel (Caffe's ``is_color``). The arrays returned are fresh per read.
    """

    # (h, w) a Resize after this source shrinks to: decode JPEGs at a reduced DCT scale that still covers
    # it (the stream's opt-in decode_scale: auto); None decodes every pixel, as Caffe does
    decode_target: Optional[Tuple[int, int]] = None

    def __init__(self, paths: Sequence[str], labels: Sequence[int], *, color: bool = True, rgb: bool = False):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        if not isinstance(color, bool):
            raise ValueError(f"color={color!r} must be a bool")
        self._paths = StringTable(paths)
        self._labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.color = color
        self.rgb = bool(rgb)

    @property
    def labels(self) -> np.ndarray:
        """All labels, in index order (read-only view)."""
        view = self._labels.view()
        view.flags.writeable = False
        return view

    def path(self, i: int) -> str:
        return self._paths[self._check_index(i)]

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, i: int) -> Sample:
        i = self._check_index(i)
        data = read_image(self._paths[i], mode=color_mode(self.color), rgb=self.rgb, target=self.decode_target)
        return {"data": data, "label": as_label(self._labels[i])}

    def key(self, i: int) -> str:
        return self.path(i)

    def spec(self) -> Spec:
        channels = channels_of(color_mode(self.color))
        return {"data": ArraySpec((channels, None, None), np.uint8), "label": ArraySpec((), np.int64)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, color={self.color})"
