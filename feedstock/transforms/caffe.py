"""CaffeTransform: Caffe's DataTransformer (crop, mirror, ``(x - mean) * scale``), fused into the batch row.

Order and randomness follow ``src/caffe/data_transformer.cpp``: per image,
draw ``do_mirror`` first (only when ``mirror``; NOT gated on phase), then
``h_off`` and ``w_off`` (only TRAIN with a crop; TEST centres with floor
division). The mean image is the full-size one, indexed at the crop offset
and not mirrored: pixel and mean come from the same source position and go
to the mirrored destination. Arithmetic is float32; output float32 CHW in
the input's channel order. A ``"mask"`` field gets the same crop and mirror.

``force_color``/``force_gray`` choose how *encoded* Datums are decoded (``decode_mode``,
``imread_flag``: give them to the source, e.g. ``CaffeLmdb(path, mode=t.decode_mode)``, as the
Caffe layer does). Arrays reaching the transform are raw Datums or decoded images, for which
Caffe ignores both flags (it logs an error and keeps the stored channels): so does this.

``apply_batch`` (the Loader's batch fast path) handles a whole (N, C, H, W) batch
when the settings draw nothing: no ``mirror``, and no crop in TRAIN (TEST crops at
the centre); otherwise it answers ``NotImplemented`` and rows go one by one.
"""
from __future__ import annotations

import logging
import math
import os
from types import NotImplementedType
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..caffe_pb import read_mean_file
from ..errors import KeyedError
from ..phase import parse_phase
from ..spec import Sample, Spec
from ._aligned import IMAGE, MASK, image_of, mask_of, spec_hw
from .base import Transform, write_rows
from .crop import CROP_FIXES, center_offsets, check_fits, crop_view, random_offsets
from .fused import Scratch, build_luts, write_batch, write_float, write_uint8
from .mean import broadcast_values, mean_values
from .prototxt import find_blocks, parse_prototxt

PARAMS = ("scale", "mirror", "crop_size", "mean_file", "mean_value", "force_color", "force_gray")

log = logging.getLogger(__name__)


def _flag(value: object, name: str) -> bool:
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{name}={value!r} must be true or false")


class CaffeTransform(Transform):
    """Caffe's ``transform_param`` semantics; ``into`` writes fused into a float32 batch row."""

    def __init__(self, *, phase: Union[str, int], scale: float = 1.0, mirror: bool = False,
                 crop_size: int = 0, mean_file: Optional[Union[str, os.PathLike]] = None,
                 mean_value: Union[float, Sequence[float]] = (), force_color: bool = False,
                 force_gray: bool = False, mean_image: Optional[np.ndarray] = None):
        self.phase = parse_phase(phase)
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)) or not math.isfinite(scale):
            raise ValueError(f"scale={scale!r} must be a finite number")
        self.scale = np.float32(scale)  # a proto float: 0.017 means float32(0.017), as in Caffe
        self.mirror = _flag(mirror, "mirror")
        if isinstance(crop_size, bool) or not isinstance(crop_size, (int, np.integer)) or crop_size < 0:
            raise ValueError(f"crop_size={crop_size!r} must be a non-negative integer")
        self.crop_size = int(crop_size)
        self.force_color, self.force_gray = _flag(force_color, "force_color"), _flag(force_gray, "force_gray")
        if self.force_color and self.force_gray:
            raise ValueError("force_color=True and force_gray=True are mutually exclusive")
        mean_value = () if mean_value is None else mean_value
        has_values = np.size(mean_value) > 0
        if sum((mean_file is not None, mean_image is not None, has_values)) > 1:
            raise ValueError(
                f"mean_file={mean_file!r}, mean_image and mean_value={mean_value!r} are mutually exclusive"
            )
        self.mean_file = None if mean_file is None else os.fspath(mean_file)
        self._mean_flipped: Optional[np.ndarray] = None
        self.mean = self._load_mean(mean_image)
        self.mean_values = mean_values(mean_value, "mean_value") if has_values else None
        self._luts: Dict[int, np.ndarray] = {}
        self._scratch = Scratch()
        self._force_logged = False

    def _load_mean(self, mean_image: Optional[np.ndarray]) -> Optional[np.ndarray]:
        mean = read_mean_file(self.mean_file) if self.mean_file is not None else mean_image
        if mean is None:
            return None
        mean = np.ascontiguousarray(mean, dtype=np.float32)
        if mean.ndim != 3:
            raise ValueError(f"mean image of shape {mean.shape} must be (C, H, W)")
        self._mean_flipped = np.ascontiguousarray(mean[:, :, ::-1])  # mirrored crops read rows forwards
        return mean

    @property
    def train(self) -> bool:
        return self.phase == 0

    @property
    def imread_flag(self) -> int:
        """The ``cv2.imdecode`` flag Caffe uses for encoded datums with these force_* settings."""
        import cv2  # only here: the transform itself never calls OpenCV

        if self.force_color:
            return cv2.IMREAD_COLOR
        return cv2.IMREAD_GRAYSCALE if self.force_gray else cv2.IMREAD_UNCHANGED

    @property
    def decode_mode(self) -> str:
        """The ``CaffeLmdb(mode=...)`` decoding encoded Datums as Caffe does with these force_* flags."""
        return "color" if self.force_color else "gray" if self.force_gray else "native"

    # -- construction from Caffe's configuration --------------------------------------------------
    @classmethod
    def from_param(cls, param: Mapping[str, Any], phase: Union[str, int]) -> "CaffeTransform":
        """From a ``transform_param`` mapping (the proto field names)."""
        unknown = sorted(set(param) - set(PARAMS))
        if unknown:
            raise ValueError(f"unknown transform_param field(s) {unknown}; known: {list(PARAMS)}")
        kwargs = dict(param)
        if "mean_file" in kwargs and not isinstance(kwargs["mean_file"], (str, os.PathLike)):
            raise ValueError(f"mean_file={kwargs['mean_file']!r} must be a path string")
        return cls(phase=phase, **kwargs)

    @classmethod
    def from_prototxt(cls, text: str, phase: Union[str, int]) -> "CaffeTransform":
        """From prototxt text: a ``transform_param { ... }`` block (alone or inside a layer) or its body."""
        tree = parse_prototxt(text)
        blocks = find_blocks(tree, "transform_param")
        if len(blocks) > 1:
            raise ValueError(f"the prototxt holds {len(blocks)} transform_param blocks; pass one")
        body = blocks[0] if blocks else tree
        param: Dict[str, Any] = {}
        for name, values in body.items():
            if name == "mean_value":
                param[name] = list(values)
            elif len(values) != 1:
                raise ValueError(f"transform_param field {name!r} is given {len(values)} times")
            else:
                param[name] = values[0]
        return cls.from_param(param, phase)

    # -- per-sample work --------------------------------------------------------------------------
    def _prepare(self, x: np.ndarray) -> np.ndarray:
        """Caffe's CHECKs on the uncropped image; force_* never convert an array (see the module doc)."""
        if (self.force_color and x.shape[0] != 3) or (self.force_gray and x.shape[0] != 1):
            self._log_force_ignored(x.shape[0])
        c, h, w = x.shape
        if c == 0:
            raise ValueError("CaffeTransform: the image has 0 channels")
        if self.crop_size:
            check_fits(h, w, self.crop_size, self.crop_size, "crop_size")
        if self.mean is not None and self.mean.shape != x.shape:
            raise ValueError(
                f"mean_file={self.mean_file!r} has shape {self.mean.shape} but the uncropped input "
                f"has shape {x.shape}; they must match"
            )
        return x

    def _log_force_ignored(self, channels: int) -> None:
        if self._force_logged:
            return
        self._force_logged = True  # Caffe logs it for every Datum; once per transform is enough
        flag = "force_color" if self.force_color else "force_gray"
        log.error("%s applies only to encoded Datums (decode them with CaffeLmdb(mode=%r)); this %d-channel "
                  "raw or decoded image keeps its channels, as in Caffe", flag, self.decode_mode, channels)

    def draw(self, shape: Tuple[int, int, int], rng: np.random.Generator) -> Tuple[bool, int, int]:
        """Caffe's draws: ``do_mirror`` (if mirror), then ``h_off``, ``w_off`` (TRAIN crop only)."""
        do_mirror = self.mirror and bool(rng.integers(0, 2))
        _, h, w = shape
        if not self.crop_size:
            return do_mirror, 0, 0
        k = self.crop_size
        top, left = random_offsets(rng, h, w, k, k) if self.train else center_offsets(h, w, k, k)
        return do_mirror, top, left

    def _out_hw(self, h: int, w: int) -> Tuple[int, int]:
        return (self.crop_size, self.crop_size) if self.crop_size else (h, w)

    def _write(self, x: np.ndarray, params: Tuple[bool, int, int], out: np.ndarray) -> None:
        do_mirror, top, left = params
        oh, ow = out.shape[1:]
        src = crop_view(x, top, left, oh, ow)
        mean = None
        if self.mean is not None:
            w = self.mean.shape[2]
            mean = (crop_view(self._mean_flipped, top, w - left - ow, oh, ow) if do_mirror  # type: ignore[arg-type]
                    else crop_view(self.mean, top, left, oh, ow))
        if x.dtype == np.uint8:
            luts = None if mean is not None else self._luts_for(x.shape[0])
            values = None if self.mean_values is None else broadcast_values(self.mean_values, x.shape[0], "mean_value")
            write_uint8(src, out, mirror=do_mirror, luts=luts, mean=mean, scale=self.scale,
                        scratch=self._scratch, arith=True, values=values)
        else:
            values = None if self.mean_values is None else broadcast_values(
                self.mean_values, x.shape[0], "mean_value")
            write_float(src, out, mirror=do_mirror, values=values, mean=mean, scale=self.scale)

    def _luts_for(self, channels: int) -> np.ndarray:
        luts = self._luts.get(channels)
        if luts is None:
            values = None if self.mean_values is None else broadcast_values(
                self.mean_values, channels, "mean_value")
            luts = self._luts[channels] = build_luts(channels, values, self.scale)
        return luts

    def _rest(self, sample: Sample, x: np.ndarray, params: Tuple[bool, int, int]) -> Sample:
        """The sample with the mask cropped and mirrored like the image (data left to the caller)."""
        out = dict(sample)
        m = mask_of(sample, x, "CaffeTransform")
        if m is not None:
            do_mirror, top, left = params
            m = crop_view(m, top, left, *self._out_hw(*x.shape[1:]))
            out[MASK] = m[:, :, ::-1] if do_mirror else m
        return out

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        x = self._prepare(image_of(sample, "CaffeTransform"))
        params = self.draw(x.shape, rng)
        data = np.empty((x.shape[0], *self._out_hw(*x.shape[1:])), dtype=np.float32)
        self._write(x, params, data)
        out = self._rest(sample, x, params)
        out[IMAGE] = data
        return out

    def into(self, sample: Sample, rng: np.random.Generator, out: Mapping[str, np.ndarray]) -> None:
        """Write the image fused into ``out["data"]`` (a float32 row); other fields are copied."""
        x = self._prepare(image_of(sample, "CaffeTransform"))
        row = out.get(IMAGE)
        expected = (x.shape[0], *self._out_hw(*x.shape[1:]))
        if row is None or row.dtype != np.float32 or row.shape != expected:
            write_rows(self(sample, rng), out)  # same draws, then a checked copy
            return
        params = self.draw(x.shape, rng)
        self._write(x, params, row)
        if len(out) > 1:
            rest = self._rest(sample, x, params)
            write_rows(rest, {k: v for k, v in out.items() if k != IMAGE})

    def apply_batch(self, fields: Mapping[str, np.ndarray]) -> Union[Dict[str, np.ndarray], NotImplementedType]:
        """Rows ``fields[name][j]`` transformed as ``self`` would, all at once; bit-identical to the rows.

        ``NotImplemented`` when a row would draw from its rng (``mirror``, a TRAIN crop) or
        the batch is one the per-row path converts or rejects (it then names the record).
        """
        x = fields.get(IMAGE)
        if x is None or self.mirror or (self.crop_size and self.train):
            return NotImplemented
        x = np.asarray(x)
        if x.ndim != 4 or x.dtype.kind not in "uif" or not self._batch_fits(x.shape[1:]):
            return NotImplemented
        c, h, w = x.shape[1:]
        oh, ow = self._out_hw(h, w)
        top, left = center_offsets(h, w, oh, ow)  # (0, 0) without a crop
        out = dict(fields)
        if MASK in fields:
            m = np.asarray(fields[MASK])
            if m.ndim != 4 or m.shape[0] != x.shape[0] or m.shape[2:] != x.shape[2:]:
                return NotImplemented
            out[MASK] = m[:, :, top : top + oh, left : left + ow]
        mean = None if self.mean is None else crop_view(self.mean, top, left, oh, ow)
        values = None if self.mean_values is None else broadcast_values(self.mean_values, c, "mean_value")
        out[IMAGE] = write_batch(x[:, :, top : top + oh, left : left + ow], values=values, mean=mean,
                                 scale=self.scale)
        return out

    def _batch_fits(self, shape: Tuple[int, int, int]) -> bool:
        """What ``_prepare`` would neither convert nor reject, and mean values that fit."""
        c, h, w = shape
        if c == 0:
            return False
        if self.crop_size > min(h, w) or (self.mean is not None and self.mean.shape != tuple(shape)):
            return False
        return self.mean_values is None or self.mean_values.size in (1, c)

    def output_spec(self, spec: Spec) -> Spec:
        out = dict(spec)
        if IMAGE not in spec:
            return out
        c, h, w = spec_hw(spec[IMAGE], "CaffeTransform")
        k = self.crop_size
        if k and ((h is not None and k > h) or (w is not None and k > w)):
            raise KeyedError(f"{{crop_size={k}}} is larger than the image ({h}x{w})", CROP_FIXES)
        if self.mean is not None and None not in (c, h, w) and self.mean.shape != (c, h, w):
            raise ValueError(f"mean_file={self.mean_file!r} has shape {self.mean.shape}, input is {(c, h, w)}")
        if self.mean_values is not None and c is not None:
            broadcast_values(self.mean_values, c, "mean_value")
        oh, ow = (k, k) if k else (h, w)
        out[IMAGE] = spec[IMAGE].with_shape((c, oh, ow)).with_dtype(np.float32)
        if MASK in spec:
            out[MASK] = spec[MASK].with_shape((spec[MASK].shape[0], oh, ow))
        return out

    def __repr__(self) -> str:
        phase = "TRAIN" if self.train else "TEST"
        return (f"CaffeTransform(phase={phase!r}, scale={float(self.scale)}, mirror={self.mirror}, "
                f"crop_size={self.crop_size}, mean_file={self.mean_file!r}, mean_value="
                f"{None if self.mean_values is None else self.mean_values.tolist()})")
