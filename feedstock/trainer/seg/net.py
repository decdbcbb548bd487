"""SegNet: a fully convolutional Net scoring every pixel, reshaped to any input size as Caffe's Net::Reshape."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import DTypeLike

from ...backend import NUMPY, Array, Backend, Rng
from ..nn.net import Net
from .layers import PixelSoftmaxWithLoss
from .metrics import SegMeter

_MAX_SHAPES = 8  # nets kept for other input sizes (a TEST set of mixed sizes reshapes per batch)


def _crop_to_input(specs: Sequence[Mapping[str, Any]], input_shape: Tuple[int, ...]) -> List[dict]:
    """A Crop without ``shape`` crops to the net input's trailing dims: FCN's ``Crop(score, data)``."""
    out = []
    for spec in specs:
        spec = dict(spec)
        if spec.get("type") == "Crop" and "shape" not in spec:
            spec["shape"] = list(input_shape[int(spec.get("axis", 2)) - 1:])
        out.append(spec)
    return out


class SegNet(Net):
    """Per-pixel scores (N, K, H, W) and a pixel-wise SoftmaxWithLoss (``ignore_label``, VALID normalization).

    Labels are (N, 1, H, W) or (N, H, W) class indices. An input of another height and width runs
    through a net set up for that size which shares this net's Param objects (weights and grads),
    so training on crops and testing on whole images use one set of weights.
    """

    loss_type = PixelSoftmaxWithLoss
    output_rank = 3
    task = "segmentation"

    def __init__(self, specs: Sequence[Mapping[str, Any]], input_shape: Sequence[int], *,
                 backend: Backend = NUMPY, dtype: DTypeLike = np.float32, seed: int = 0) -> None:
        self.specs = [dict(s) for s in specs]
        shape = tuple(int(d) for d in input_shape)
        super().__init__(_crop_to_input(self.specs, shape), shape, backend=backend, dtype=dtype, seed=seed)
        self._shaped: "OrderedDict[Tuple[int, ...], SegNet]" = OrderedDict()
        self.ignore_label = self.loss.ignore_label

    def for_shape(self, input_shape: Sequence[int]) -> "SegNet":
        """This net, or one set up for ``input_shape`` (C, H, W) sharing this net's parameters."""
        shape = tuple(int(d) for d in input_shape)
        if shape == self.input_shape:
            return self
        net = self._shaped.pop(shape, None)
        if net is None:
            if len(shape) != 3 or shape[0] != self.input_shape[0]:
                raise ValueError(f"input of shape {shape}: the net takes ({self.input_shape[0]}, H, W)")
            net = SegNet(self.specs, shape, backend=self.backend, dtype=self.dtype)
            for mine, theirs in zip(self.layers, net.layers):
                theirs.params = mine.params  # the same Param objects: one set of weights and grads
            if len(self._shaped) >= _MAX_SHAPES:
                self._shaped.popitem(last=False)
        self._shaped[shape] = net
        return net

    def forward(self, x: Array, *, train: bool = False, rng: Optional[Rng] = None) -> Array:
        """Scores (N, K, H, W) of a batch of any height and width."""
        return Net.forward(self.for_shape(x.shape[1:]), x, train=train, rng=rng)

    def forward_backward(self, x: Array, labels: Array, *, rng: Optional[Rng] = None) -> Tuple[Array, Array]:
        """(loss, pixel accuracy x N), so that the loop's ``correct / N`` is the batch's pixel accuracy
        over the non-ignored pixels; param grads are filled."""
        net = self.for_shape(x.shape[1:])
        scores = Net.forward(net, x, train=True, rng=rng)
        loss = self.loss.forward(scores, labels)
        net.backward(self.loss.backward())
        valid = self.loss.valid
        hits = ((scores.argmax(axis=1) == self.loss.safe) & valid).sum()
        return loss, hits * (len(x) / max(1.0, float(valid.sum())))

    def input_reshape(self, shape: Sequence[int], where: str) -> Optional[Tuple[int, ...]]:
        """None (records go in as they are) for any (C, H, W) with this net's channels; else ValueError."""
        shape = tuple(int(d) for d in shape)
        if len(shape) != 3 or shape[0] != self.input_shape[0]:
            raise ValueError(f"{where}: records of shape {shape}, the model takes ({self.input_shape[0]}, H, W) "
                             "images of any height and width")
        return None

    def check_labels(self, labels: np.ndarray, where: str) -> None:
        """ValueError naming ``where`` unless labels are (N, 1, H, W) or (N, H, W) class indices in
        [0, num_classes) or ``ignore_label``, integers or floats holding integers."""
        labels = np.asarray(labels)
        if labels.ndim not in (3, 4) or (labels.ndim == 4 and labels.shape[1] != 1):
            raise ValueError(f"{where}: shape {tuple(labels.shape)}, expected per-pixel class labels "
                             "(N, 1, H, W) or (N, H, W)")
        if labels.dtype.kind not in "iuf":
            raise ValueError(f"{where}: dtype {labels.dtype}, expected integer class indices")
        flat = labels.reshape(-1)
        ok = (flat >= 0) & (flat < self.num_classes) & (flat == np.floor(flat))
        if self.ignore_label is not None:
            ok |= flat == self.ignore_label
        if not ok.all():
            bad = np.unique(flat[~ok])[:5].tolist()
            raise ValueError(f"{where}: label values {bad}, expected classes in [0, {self.num_classes}) "
                             f"or ignore_label {self.ignore_label}")

    def loss_labels(self, labels: Array) -> Array:
        """Device labels as the pixel-wise loss takes them: (N, H, W) class indices."""
        return labels.reshape((labels.shape[0],) + tuple(labels.shape[-2:]))

    def meter(self) -> SegMeter:
        """Loss, pixel accuracy, per-class and mean IoU over the non-ignored pixels."""
        return SegMeter(self.num_classes, self.ignore_label)
