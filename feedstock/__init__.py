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
from .remote import FeedServer, RemoteLoader  # noqa: F401
from .spec import ArraySpec  # noqa: F401
from .transforms import CaffeTransform, Compose  # noqa: F401
from .writers import LmdbWriter  # noqa: F401

__version__ = "0.1.0"
