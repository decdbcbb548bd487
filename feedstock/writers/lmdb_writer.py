"""LmdbWriter: Caffe-style LMDB databases (a directory holding data.mdb + lock.mdb).

Behaves as Caffe's convert_imageset writer (docs/caffe-compat.md, "Tools and keys"): records committed in
transactions of ``txn_size`` (1000), the map size doubled and the batch retried
on MDB_MAP_FULL, keys ``%08d_<name>`` (:func:`caffe_key`) so that LMDB's byte
order is the insertion order.
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional, Tuple, Union

import lmdb

from ..caffe_pb import Datum
from ..loaders.caffe_lmdb import release_env

log = logging.getLogger(__name__)

Key = Union[bytes, str]
DEFAULT_MAP_SIZE = 1 << 30  # grows by doubling; on Linux the file only holds pages written


def caffe_key(index: int, name: Optional[str] = None) -> str:
    """``%08d_<name>`` as convert_imageset writes; ``%08d`` without a name (MNIST converter)."""
    if index < 0:
        raise ValueError(f"{index=} must be non-negative")
    return f"{index:08d}" if name is None else f"{index:08d}_{name}"


def _as_key(key: Key) -> bytes:
    out = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if not out:
        raise ValueError("LMDB keys must be non-empty")
    return out


def is_lmdb(path: str) -> bool:
    """True when ``path`` is an LMDB environment directory (holds data.mdb)."""
    return os.path.isfile(os.path.join(path, "data.mdb"))


def _prepare_dir(path: str, *, overwrite: bool, resume: bool) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"LMDB path {path!r} exists and is not a directory")
    if is_lmdb(path) and not (overwrite or resume):
        raise FileExistsError(f"LMDB database {path!r} already exists; pass overwrite=True to replace it")
    if resume and not is_lmdb(path):
        raise FileNotFoundError(f"cannot resume: no LMDB database at {path!r}")
    if overwrite and is_lmdb(path):
        for name in ("data.mdb", "lock.mdb"):
            if os.path.exists(os.path.join(path, name)):
                os.remove(os.path.join(path, name))
    os.makedirs(path, exist_ok=True)


class LmdbWriter:
    """Write records to a new (or, with ``resume=True``, an existing) LMDB; a context manager.

    Records put are committed in batches of ``txn_size``; the pending batch is
    committed on ``close()`` / leaving the ``with`` block, also when it is left by
    an exception (what was put is a valid prefix that ``last_key()`` can resume from).
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False,
                 map_size: int = DEFAULT_MAP_SIZE, txn_size: int = 1000):
        if map_size <= 0:
            raise ValueError(f"{map_size=} must be positive")
        if txn_size <= 0:
            raise ValueError(f"{txn_size=} must be positive")
        if overwrite and resume:
            raise ValueError("overwrite=True and resume=True exclude each other")
        self.path = os.fspath(path)
        self.txn_size = int(txn_size)
        self.count = 0  # records committed by this writer
        self._pending: List[Tuple[bytes, bytes]] = []
        _prepare_dir(self.path, overwrite=overwrite, resume=resume)
        release_env(self.path)  # py-lmdb refuses a second env on the same files in one process
        self._env: Optional[lmdb.Environment] = lmdb.open(self.path, map_size=int(map_size), subdir=True)

    def __enter__(self) -> "LmdbWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def put(self, key: Key, value: bytes) -> None:
        """Queue one record; a full batch of ``txn_size`` is committed."""
        if self._env is None:
            raise ValueError(f"LmdbWriter for {self.path!r} is closed")
        self._pending.append((_as_key(key), bytes(value)))
        if len(self._pending) >= self.txn_size:
            self.flush()

    def put_datum(self, index: int, name: Optional[str], datum: Union[Datum, bytes]) -> str:
        """Put a Datum under ``caffe_key(index, name)``; returns the key."""
        key = caffe_key(index, name)
        value = bytes(datum) if isinstance(datum, (bytes, bytearray)) else datum.SerializeToString()
        self.put(key, value)
        return key

    def flush(self) -> None:
        """Commit the pending batch, doubling the map size while LMDB says it is full."""
        if not self._pending or self._env is None:
            return
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                new_size = self._env.info()["map_size"] * 2
                log.info("LMDB %s full; doubling map size to %d bytes", self.path, new_size)
                self._env.set_mapsize(new_size)
        self.count += len(self._pending)
        self._pending.clear()

    def last_key(self) -> Optional[bytes]:
        """The greatest committed key (LMDB order), or None for an empty database."""
        if self._env is None:
            raise ValueError(f"LmdbWriter for {self.path!r} is closed")
        with self._env.begin() as txn:
            cursor = txn.cursor()
            return bytes(cursor.key()) if cursor.last() else None

    def close(self) -> None:
        if self._env is None:
            return
        try:
            self.flush()
        finally:
            self._env.close()
            self._env = None

    def __repr__(self) -> str:
        state = "closed" if self._env is None else "open"
        return f"LmdbWriter({self.path!r}, {self.count} committed, {state})"
