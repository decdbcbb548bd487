"""feedstock: keeps neural-network trainers fed.

Public API (re-exports only): sources in :mod:`feedstock.loaders`, transforms in
:mod:`feedstock.transforms`, the :class:`Loader` (:mod:`feedstock.pipeline`),
Caffe's formats in :mod:`feedstock.caffe_pb`, the trainer in
:mod:`feedstock.trainer`, the Caffe layers in :mod:`feedstock.caffe_layer`, the
remote feed (`feedstock serve` and :class:`RemoteLoader`) in :mod:`feedstock.remote`.
``feedstock.torch`` stays a submodule so that importing feedstock never needs torch.
"""
from .errors import (  # noqa: F401
    FeedstockError,
    RecordError,
    RemoteError,
    RemoteSetupError,
    ServerLost,
    ShmSpaceError,
    TooManyBadRecords,
    WorkerDied,
    WorkerError,
    WorkerTimeout,
)
from .loaders import (  # noqa: F401
    ArraySource,
    CaffeLmdb,
    CsvTable,
    Hdf5,
    ImageFolder,
    ListFile,
    Pairs,
    Source,
    open_source,
)
from .pipeline.loader import Loader  # noqa: F401
from .spec import ArraySpec  # noqa: F401
from .transforms import CaffeTransform, Compose  # noqa: F401
from .writers import LmdbWriter  # noqa: F401

__version__ = "0.1.0"

# Re-exported on first use: the remote feed needs pyzmq, which the Caffe layer (imported inside
# the caffe binary) must not load.
_LAZY = {"FeedServer": ".remote", "RemoteLoader": ".remote"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
