"""CaffeLmdb: random access to a Caffe LMDB of Datums (convert_imageset, DIGITS, MNIST/CIFAR tools).

Records are indexed in LMDB key byte order, the order Caffe's Data layer reads
(docs/caffe-compat.md, note 11). Raw Datums come back as stored (uint8 CHW from ``data``, else float32
from ``float_data``); encoded ones are decoded with OpenCV like Caffe's
DataTransformer: ``mode="color"``/``"gray"``/``"native"`` = force_color /
force_gray / IMREAD_UNCHANGED (docs/caffe-compat.md, notes 1-4, 6). Raw arrays are
read-only views of the parsed record (no extra copy); do not modify them in place.
``read_batch`` reads fixed-shape raw Datums in one vectorised step (the Loader's batch
fast path) and answers ``NotImplemented`` for encoded, float or mixed-shape records,
which then go record by record. ``decode_s`` counts the seconds spent decoding
encoded records in this process (the Loader reports it apart from reading).
Environments are opened without locking (``lock=False``): the database must not
be written by another process while it is read (training data is static).

py-lmdb refuses to open one environment twice in a process (docs/caffe-compat.md, note 22), so every
source on a path shares one read-only environment per process (:func:`shared_env`).
"""
from __future__ import annotations

import operator
import os
import threading
import time
from types import NotImplementedType
from typing import Dict, Mapping, Optional, Tuple, Union

import lmdb
import numpy as np
from google.protobuf.message import DecodeError

from ..caffe_pb import Datum
from ..errors import RecordError
from ..protocols import Indices
from ..spec import ArraySpec, Sample, Spec
from .base import Source, as_label, deliver
from .decode import channels_of, check_mode, decode_datum
from .strings import StringTable, cut

_PID = os.getpid()  # refreshed in forked children below; os.getpid() per read would be a syscall


def _after_fork_in_child() -> None:
    global _PID, _ENVS_LOCK
    _PID = os.getpid()
    _ENVS_LOCK = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


class _ReadEnv:
    """A read-only environment plus one long-lived read transaction per thread."""

    def __init__(self, path: str):
        subdir = os.path.isdir(path)
        # lock=False: read-only datasets need no reader table, and read-only media work.
        # readahead=False: random access would otherwise fault in whole neighbouring pages.
        self.env = lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=subdir, max_readers=4096)
        self.pid = _PID
        self.closed = False
        self._local = threading.local()

    def txn(self) -> lmdb.Transaction:
        txn = getattr(self._local, "txn", None)
        if txn is None:
            txn = self._local.txn = self.env.begin(buffers=False)
        return txn


# One env per realpath in this process. An entry from another pid was inherited by
# fork: it is closed and reopened (safe for lock=False read-only envs: no lock table).
_ENVS: Dict[str, _ReadEnv] = {}
_ENVS_LOCK = threading.Lock()


def _env_path(path: str) -> str:
    """Canonical path of an environment: its directory, also when given its data.mdb."""
    real = os.path.realpath(path)
    if os.path.basename(real) == "data.mdb" and os.path.isfile(real):
        return os.path.dirname(real)
    return real


def shared_env(path: str) -> _ReadEnv:
    """The process-wide read environment of the LMDB at ``path`` (opened on first use)."""
    real = _env_path(path)
    entry = _ENVS.get(real)
    if entry is not None and entry.pid == _PID:
        return entry
    with _ENVS_LOCK:
        entry = _ENVS.get(real)
        if entry is not None and entry.pid != _PID:
            entry.closed = True
            entry.env.close()
            entry = None
        if entry is None:
            try:
                entry = _ENVS[real] = _ReadEnv(real)
            except lmdb.Error as e:
                raise ValueError(f"cannot open LMDB {path!r}: {e}") from None
        return entry


def release_env(path: str) -> None:
    """Close this process's read environment on ``path`` (before writing to it, say)."""
    with _ENVS_LOCK:
        entry = _ENVS.pop(_env_path(path), None)
    if entry is not None and entry.pid == _PID:
        entry.closed = True
        entry.env.close()


def read_keys(path: str) -> StringTable:
    """Every key of the LMDB in byte order, as one compact table."""
    txn = shared_env(path).txn()
    return StringTable(txn.cursor().iternext(keys=True, values=False))  # type: ignore[arg-type]


class CaffeLmdb(Source):
    """Datums of a Caffe LMDB; yields ``{"data": CHW array, "label": int64 scalar}``."""

    _handles = ("_entry",)
    decode_target: Optional[Tuple[int, int]] = None  # a stream's opt-in reduced JPEG decode (decode.py)

    def __init__(self, path: str | os.PathLike, *, mode: str = "native"):
        self.path = os.fspath(path)
        self.mode = check_mode(mode)
        if not os.path.exists(self.path):
            raise ValueError(f"LMDB {cut(repr(self.path))} does not exist: check the path")
        self._real = _env_path(self.path)
        self._keys = read_keys(self.path)
        self._n = len(self._keys)
        self._spec: Optional[Spec] = None
        self._entry: Optional[_ReadEnv] = None
        self._labels: Dict[int, np.ndarray] = {}  # read-only 0-d label arrays, shared between samples
        self.decode_s = 0.0

    def __getstate__(self) -> Dict[str, object]:
        state = super().__getstate__()
        state["_labels"] = {}  # unpickled arrays would come back writeable
        return state

    def __len__(self) -> int:
        return self._n

    def _index(self, i: int) -> int:
        i = operator.index(i)
        j = i + self._n if i < 0 else i
        if not 0 <= j < self._n:
            raise IndexError(f"index {i} out of range for CaffeLmdb of length {self._n}")
        return j

    def raw_key(self, i: int) -> bytes:
        """The LMDB key of record ``i`` as stored."""
        return self._keys.raw(self._index(i))

    def key(self, i: int) -> str:
        return f"{self.path}:{self.raw_key(i).decode('utf-8', 'backslashreplace')}"

    def _txn(self) -> lmdb.Transaction:
        entry = self._entry
        if entry is None or entry.pid != _PID or entry.closed:
            entry = self._entry = shared_env(self._real)
        return entry.txn()

    def _label(self, value: int) -> np.ndarray:
        label = self._labels.get(value)
        if label is None:
            label = as_label(value)
            label.flags.writeable = False
            if len(self._labels) < 4096:
                self._labels[value] = label
        return label

    def _datum(self, value: Optional[bytes], i: int) -> Datum:
        if value is None:
            raise RecordError(self.key(i), "key vanished from the database")
        try:
            return Datum.FromString(value)
        except DecodeError as e:
            raise RecordError(self.key(i), f"value is not a Caffe Datum ({len(value)} bytes): {e}") from None

    def _sample(self, value: Optional[bytes], i: int) -> Sample:
        datum = self._datum(value, i)
        pixels = datum.data
        if pixels and not datum.encoded:
            # Fast path for the common raw uint8 layout (a read-only view of the parsed bytes).
            shape = (datum.channels, datum.height, datum.width)
            if len(pixels) != shape[0] * shape[1] * shape[2]:
                raise RecordError(self.key(i), f"datum holds {len(pixels)} bytes but C,H,W = {shape}")
            data = np.frombuffer(pixels, dtype=np.uint8).reshape(shape)
        else:
            t0 = time.perf_counter()
            data = decode_datum(datum, mode=self.mode, key=self.key(i), target=self.decode_target)
            self.decode_s += time.perf_counter() - t0
        return {"data": data, "label": self._label(datum.label)}

    def __getitem__(self, i: int) -> Sample:
        i = self._index(i)
        return self._sample(self._txn().get(self._keys.raw(i)), i)  # type: ignore[arg-type]

    def read_batch(self, indices: Indices, out: Optional[Mapping[str, np.ndarray]] = None
                   ) -> Union[Sample, NotImplementedType]:
        """``{"data": (N, C, H, W) uint8, "label": (N,) int64}`` of raw same-shape Datums, read-only (or ``out``).

        Equal to stacking ``self[i]``; ``NotImplemented`` when a record is encoded,
        holds ``float_data`` or differs in shape from the first (read those one by one).
        A missing or unparsable record raises RecordError naming its key.
        """
        rows = [self._index(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1).tolist()]
        if not rows:
            raise ValueError("read_batch needs at least one index")
        txn, raw, datum = self._txn(), self._keys.raw, self._datum
        datums = [datum(txn.get(raw(j)), j) for j in rows]  # type: ignore[arg-type]
        first = datums[0]
        shape = (first.channels, first.height, first.width)
        size = shape[0] * shape[1] * shape[2]
        if size == 0 or any(d.encoded or (d.channels, d.height, d.width) != shape for d in datums):
            return NotImplemented
        parts = [d.data for d in datums]  # one bytes object per record (each access copies)
        if set(map(len, parts)) != {size}:
            for j, part in zip(rows, parts):
                if not part:
                    return NotImplemented  # float_data: the per-record path converts it
                if len(part) != size:
                    raise RecordError(self.key(j), f"datum holds {len(part)} bytes but C,H,W = {shape}")
        data = np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(len(rows), *shape)
        return deliver({"data": data, "label": np.fromiter((d.label for d in datums), np.int64, len(rows))}, out)

    def read_labels(self) -> np.ndarray:
        """Every record's label (int64, index order): each Datum parsed, no image decoded."""
        txn, raw = self._txn(), self._keys.raw
        return np.fromiter((self._datum(txn.get(raw(i)), i).label for i in range(self._n)),  # type: ignore[arg-type]
                           np.int64, self._n)

    def spec(self) -> Spec:
        """From the first record: exact shape for raw Datums, (C or None, None, None) for encoded."""
        if self._spec is None:
            self._spec = self._probe_spec()
        return dict(self._spec)

    def _probe_spec(self) -> Spec:
        if len(self) == 0:
            raise ValueError(f"LMDB {self.path!r} is empty")
        value = self._txn().get(self._keys.raw(0))
        datum = Datum.FromString(value) if value is not None else Datum()
        if datum.encoded:
            data = ArraySpec((channels_of(self.mode), None, None), np.uint8)
        else:
            data = ArraySpec.of(self[0]["data"])
        return {"data": data, "label": ArraySpec((), np.int64)}

    def __repr__(self) -> str:
        return f"CaffeLmdb({self.path!r}, {len(self)} records, mode={self.mode!r})"

