"""The stream definition: source, transforms and loader options, and the one way to build its Loader.

Every entry point (``feedstock train``/``serve``/``bench``/``predict``/``inspect``,
the Caffe DataLayer) describes what it reads with a :class:`Stream` and builds
its Loader with :meth:`Stream.build_loader`. A Stream comes from any of three
forms, parsed by :mod:`feedstock.stream.forms`: command-line flags (one shared
argument group), a param_str (dict literal, JSON or YAML) and a YAML file.
The keys are Caffe's where Caffe has one (``transform_param``, ImageData's
``new_height``/``root_folder``/``is_color``, ``batch_size``, ``shuffle``).
"""
from __future__ import annotations

import os
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

from ..phase import TRAIN, parse_phase
from ..pipeline.options import LoaderOptions
from .build import build_loader, build_transforms, loader_options
from .check import TRANSFORM_KEYS
from .keys import StreamKeys
from .kinds import kind_name, source_of

if TYPE_CHECKING:
    from ..loaders.base import Source
    from ..pipeline.loader import Loader
    from ..transforms.base import Transform


class Stream(StreamKeys):
    """What a Loader reads and how: see the module doc; every value is validated at construction."""

    def loader_options(self, **overrides: Any) -> LoaderOptions:
        """This stream's loader options (an unset seed resolved to fresh entropy, once per call), with
        ``overrides`` (any LoaderOptions key): what every engine of this stream takes."""
        return loader_options(self).replace(**overrides)

    # ----- building ----------------------------------------------------------------------------
    def kind(self) -> str:
        """The source type, guessed from the path when ``source_type`` is "auto" (:func:`.kinds.kind_name`)."""
        return kind_name(self)

    def build_source(self, *, fields: Optional[Sequence[str]] = None, caffe_layout: bool = False,
                     class_names: Optional[Sequence[str]] = None, labels: str = "required") -> "Source":
        """The Source reading ``source``, opened by its kind: :func:`.kinds.source_of` (``fields``: HDF5
        dataset names; ``caffe_layout``: CSV rows as (F, 1, 1) blobs; ``class_names``: the training set's
        label codes; ``labels="optional"``: prediction data, labels only where present)."""
        return source_of(self, fields=fields, caffe_layout=caffe_layout, class_names=class_names, labels=labels)

    def build_transforms(self, phase: Union[int, str] = TRAIN) -> List["Transform"]:
        """The transforms of ``phase``: TEST draws nothing (centre crop, no mirror, no occlusion)."""
        return build_transforms(self, self.kind(), parse_phase(phase))

    def build_loader(self, phase: Union[int, str] = TRAIN, *, fields: Optional[Sequence[str]] = None,
                     caffe_layout: bool = False, source: Optional["Source"] = None, **overrides: Any) -> "Loader":
        """The Loader of this stream in ``phase``; ``overrides`` replace loader options for this
        one Loader (e.g. ``shuffle=False`` for a validation pass); ``source`` replaces the one
        the stream would build (e.g. a held-out split of it)."""
        return build_loader(self, parse_phase(phase), fields=fields, caffe_layout=caffe_layout, source=source,
                            **overrides)

    def fingerprint(self) -> Dict[str, object]:
        """Source identity, transform and sampler settings, JSON-able: two feeds of one stream
        (servers of one RemoteLoader) must agree on every key. The seed is left out (the
        client sends its own) and so are paths' folders (hosts may mount data elsewhere)."""
        names = {k: os.path.basename(os.path.normpath(getattr(self, k))) if getattr(self, k) else ""
                 for k in ("source", "masks", "mean_file")}
        out: Dict[str, object] = {"source": names["source"], "source_type": self.source_type,
                               "masks": names["masks"], "label_column": self.label_column}
        for k in TRANSFORM_KEYS:
            out[k] = names[k] if k == "mean_file" and self.mean_file else getattr(self, k)
        for k in ("batch_size", "shuffle", "drop_last", "on_error"):
            out[k] = getattr(self, k)
        out["rank"], out["world_size"] = self.shard  # the fingerprint's keys before shard: servers of both agree
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


STREAM_KEYS = tuple(f.name for f in fields(StreamKeys))

