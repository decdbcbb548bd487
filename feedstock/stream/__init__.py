"""The one stream definition: source, transforms and loader options, and the one way to build its Loader.

Every entry point (``feedstock train``/``serve``/``bench``/``predict``/``inspect``,
the Caffe DataLayer) describes what it reads with a :class:`Stream` and builds
its Loader with :meth:`Stream.build_loader`. A Stream comes from any of three
forms (:mod:`.forms`): command-line flags (one shared argument group), a
param_str (dict literal, JSON or YAML) and a YAML file. The keys are Caffe's
where Caffe has one; docs/stream.md lists them all.

Modules: :mod:`.definition` (the Stream), :mod:`.check` (one rule per key),
:mod:`.build` (source, transforms and Loader of a Stream), :mod:`.forms` (parsers).
"""
from ..phase import TEST, TRAIN, parse_phase
from .build import resolve_seed
from .check import CAFFE_TRANSFORM_KEYS, TRANSFORM_KEYS, StreamKeyError
from .definition import STREAM_KEYS, Stream
from .forms import add_stream_arguments, parse_param_str, stream_from_args, stream_from_mapping, stream_from_yaml

__all__ = ["Stream", "TRAIN", "TEST", "parse_phase", "STREAM_KEYS", "TRANSFORM_KEYS", "CAFFE_TRANSFORM_KEYS",
           "StreamKeyError", "resolve_seed", "add_stream_arguments", "parse_param_str", "stream_from_args",
           "stream_from_mapping", "stream_from_yaml"]
