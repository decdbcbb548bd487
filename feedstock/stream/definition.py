"""The stream definition: source, transforms and loader options, and the one way to build its Loader.

Every entry point (``feedstock train``/``serve``/``bench``/``predict``/``inspect``,
the Caffe DataLayer) describes what it reads with a :class:`Stream` and builds
its Loader with :meth:`Stream.build_loader`. A Stream comes from any of three
forms, parsed by :mod:`feedstock.stream_forms`: command-line flags (one shared
argument group), a param_str (dict literal, JSON or YAML) and a YAML file.
The keys are Caffe's where Caffe has one (``transform_param``, ImageData's
``new_height``/``root_folder``/``is_color``, ``batch_size``, ``shuffle``).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

from ..phase import TRAIN, parse_phase
from .check import RULES, TRANSFORM_KEYS, StreamKeyError, check_together

if TYPE_CHECKING:
    from ..loaders.base import Source
    from ..pipeline.loader import Loader
    from ..transforms.base import Transform



@dataclass(frozen=True)
class Stream:
    """What a Loader reads and how: see the module doc; every value is validated at construction."""

    # the source
    source: str = ""
    source_type: str = "auto"
    root_folder: str = ""
    masks: str = ""
    label_column: str = ""
    classes: str = ""
    # transforms: Caffe's transform_param, ImageData's resize and colour, augmentations
    scale: float = 1.0
    mirror: bool = False
    crop_size: int = 0
    mean_file: Optional[str] = None
    mean_value: Tuple[float, ...] = ()
    force_color: bool = False
    force_gray: bool = False
    new_height: int = 0
    new_width: int = 0
    decode_scale: Union[str, int] = 1  # "auto": JPEGs decoded at a reduced DCT scale before new_height/width
    is_color: bool = True
    scales: Tuple[float, ...] = ()
    pad_value: float = 0.0
    ignore_label: int = 255
    occlude: bool = False
    to_range: Optional[Tuple[float, float]] = None
    # the loader
    batch_size: int = 64
    shuffle: bool = False
    seed: Optional[int] = None
    drop_last: bool = False
    workers: Union[int, str] = 2
    prefetch: int = 4
    on_error: str = "raise"
    max_bad_fraction: float = 0.01
    timeout: Optional[float] = 120.0
    start_method: str = "auto"
    rank: int = 0
    world_size: int = 1
    engine: str = "local"  # "ray": Ray actors make the same batches (feedstock.engines)
    address: Optional[str] = None  # engine ray: the cluster to join (None: a local Ray instance)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, RULES[f.name](f.name, getattr(self, f.name)))
        check_together(self)

    def replace(self, **changes: Any) -> "Stream":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> Dict[str, Any]:
        """Plain JSON-able values (tuples as lists): what a snapshot or a YAML file stores."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def changed(self) -> Dict[str, Any]:
        """The keys set to something other than their default."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}

    # ----- building ----------------------------------------------------------------------------
    def kind(self) -> str:
        """The source type, guessed from the path when ``source_type`` is "auto"."""
        if not self.source:
            raise StreamKeyError("source", " must name the data to read (a path)")
        if self.source_type != "auto":
            return self.source_type
        if self.masks or self.scales:
            return "pairs"  # only image + mask pairs have masks and scales
        from ..loaders.open_source import guess_kind

        return guess_kind(self.source)

    def build_source(self, *, fields: Optional[Sequence[str]] = None, caffe_layout: bool = False) -> "Source":
        """The Source reading ``source``; ``fields``: HDF5 dataset names (Caffe's HDF5Data tops);
        ``caffe_layout``: CSV rows as (F, 1, 1) blobs, the shape Caffe's layers take."""
        from .build import build_source

        return build_source(self, self.kind(), fields=fields, caffe_layout=caffe_layout)

    def build_transforms(self, phase: Any = TRAIN) -> List["Transform"]:
        """The transforms of ``phase``: TEST draws nothing (centre crop, no mirror, no occlusion)."""
        from .build import build_transforms

        return build_transforms(self, self.kind(), parse_phase(phase))

    def build_loader(self, phase: Any = TRAIN, *, fields: Optional[Sequence[str]] = None,
                     caffe_layout: bool = False, source: Optional["Source"] = None, **overrides: Any) -> "Loader":
        """The Loader of this stream in ``phase``; ``overrides`` replace loader options for this
        one Loader (e.g. ``shuffle=False`` for a validation pass); ``source`` replaces the one
        the stream would build (e.g. a held-out split of it)."""
        from .build import build_loader

        return build_loader(self, parse_phase(phase), fields=fields, caffe_layout=caffe_layout, source=source,
                            **overrides)

    def fingerprint(self) -> Dict[str, Any]:
        """Source identity, transform and sampler settings, JSON-able: two feeds of one stream
        (servers of one RemoteLoader) must agree on every key. The seed is left out (the
        client sends its own) and so are paths' folders (hosts may mount data elsewhere)."""
        names = {k: os.path.basename(os.path.normpath(getattr(self, k))) if getattr(self, k) else ""
                 for k in ("source", "masks", "mean_file")}
        out: Dict[str, Any] = {"source": names["source"], "source_type": self.source_type,
                               "masks": names["masks"], "label_column": self.label_column}
        for k in TRANSFORM_KEYS:
            out[k] = names[k] if k == "mean_file" and self.mean_file else getattr(self, k)
        for k in ("batch_size", "shuffle", "drop_last", "rank", "world_size", "on_error"):
            out[k] = getattr(self, k)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


STREAM_KEYS = tuple(f.name for f in fields(Stream))

