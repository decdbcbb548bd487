"""feedstock: keeps neural-network trainers fed.

Public API (re-exports only): sources in :mod:`feedstock.loaders`, transforms in
:mod:`feedstock.transforms`, the :class:`Loader`, and Caffe's formats in
:mod:`feedstock.caffe_pb`.
"""
from .errors import FeedstockError, RecordError, WorkerError  # noqa: F401
from .spec import ArraySpec  # noqa: F401

__version__ = "0.1.0"
