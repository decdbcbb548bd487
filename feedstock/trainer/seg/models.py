"""Segmentation models: ``fcn_small``, a small FCN (conv/ReLU/pool, 1x1 scores, bilinear Deconvolution, Crop)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Sequence

import numpy as np
from numpy.typing import DTypeLike

from ...backend import NUMPY, Backend
from ..modeldef import ModelDef
from ..nn.solver import SolverConfig
from .net import SegNet

_MSRA = {"type": "msra"}
_CONST0 = {"type": "constant"}
_BIAS_MULTS = [{"lr_mult": 1}, {"lr_mult": 2}]


@dataclass(frozen=True)
class SegModelDef(ModelDef):
    """A ModelDef whose net scores every pixel: builds a SegNet (task "segmentation": IoU, pixel accuracy)."""

    def build(self, *, backend: Backend = NUMPY, dtype: DTypeLike = np.float32, seed: int = 0) -> SegNet:
        return SegNet(self.layers, self.input_shape, backend=backend, dtype=dtype, seed=seed)


def _conv(name: str, n: int, k: int) -> Dict[str, Any]:
    return {"type": "Convolution", "name": name, "num_output": n, "kernel_size": k, "pad": k // 2,
            "weight_filler": _MSRA, "bias_filler": _CONST0, "param": _BIAS_MULTS}


def fcn_small(*, num_classes: int = 4, input_shape: Sequence[int] = (3, 96, 128), width: int = 16,
              ignore_label: int = 255) -> SegModelDef:
    """Two conv/ReLU/pool stages (stride 4), a conv, 1x1 class scores, x4 learned upsampling.

    The upsampling is FCN's: a Deconvolution (kernel 8, stride 4, pad 2, group = classes) with
    Caffe's bilinear filler, so it starts as exact bilinear interpolation and then learns; a
    Crop to the input size follows (a no-op when H and W are multiples of 4; with pad 2 the
    score of input pixel y sits at 4y + 1.5, the centre of the 4 pixels it pooled).
    """
    if num_classes < 2 or width <= 0:
        raise ValueError(f"num_classes={num_classes} must be >= 2 and width={width} positive")
    w = int(width)
    layers = (
        _conv("conv1", w, 3), {"type": "ReLU", "name": "relu1"},
        {"type": "Pooling", "name": "pool1", "pool": "MAX", "kernel_size": 2, "stride": 2},
        _conv("conv2", 2 * w, 3), {"type": "ReLU", "name": "relu2"},
        {"type": "Pooling", "name": "pool2", "pool": "MAX", "kernel_size": 2, "stride": 2},
        _conv("conv3", 2 * w, 3), {"type": "ReLU", "name": "relu3"},
        {"type": "Convolution", "name": "score", "num_output": num_classes, "kernel_size": 1,
         "weight_filler": {"type": "xavier"}, "bias_filler": _CONST0, "param": _BIAS_MULTS},
        {"type": "Deconvolution", "name": "upscore", "num_output": num_classes, "group": num_classes,
         "kernel_size": 8, "stride": 4, "pad": 2, "bias_term": False, "weight_filler": {"type": "bilinear"}},
        {"type": "Crop", "name": "crop", "axis": 2, "offset": 0},
        {"type": "SoftmaxWithLoss", "name": "loss", "ignore_label": int(ignore_label), "normalization": "VALID"},
    )
    # FCN's "poly" policy: the rate falls linearly to 0 at max_iter, which settles the noisy per-pixel steps.
    solver = SolverConfig(base_lr=0.05, momentum=0.9, weight_decay=0.0005, lr_policy="poly", power=1.0,
                          max_iter=1000, display=100, test_interval=250, snapshot_prefix="fcn_small")
    return SegModelDef("fcn_small", layers, tuple(int(d) for d in input_shape), scale=1.0 / 128, mean=128.0,
                       solver=solver)
