"""What a client accepts from a server, checked field by field: a bad reply fails that server, not the client.

The receive thread serves every server of a RemoteLoader; a message it cannot use
(a field of the wrong type, a shape no buffer can hold) is a RemoteError naming the
field, charged to the server that sent it (:meth:`Link._receive`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Mapping

import numpy as np

from ..errors import RemoteError
from ..loaders.strings import cut
from ..rng import MAX_SEED
from .messages import MAX_BATCH, MAX_SESSION, show

MAX_BATCH_BYTES = 1 << 36  # one batch of a feed (64 GiB): beyond it a meta is not believed
MAX_TEXT = 2000  # characters of a server's error message kept


def _int(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if type(value) is not int or not lo <= value < hi:
            raise RemoteError(f"{name}={show(value)} is not an integer in [{lo}, {hi})")
        return value

    return check


def _bool(name: str, value: Any) -> bool:
    if type(value) is not bool:
        raise RemoteError(f"{name}={show(value)} is not true/false")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise RemoteError(f"{name}={show(value)} is not a string")
    return cut(value, MAX_TEXT)


def _part(name: str, value: Any) -> list:
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)
            and 0 <= value[0] < value[1]):
        raise RemoteError(f"{name}={show(value)} is not [j, n] with 0 <= j < n")
    return value


def _mapping(name: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise RemoteError(f"{name}={show(value)} is not an object")
    return value


def _fields(name: str, value: Any) -> list:
    if not isinstance(value, list) or not value:
        raise RemoteError(f"{name}={show(value)} is not a list of [name, shape, dtype]")
    for item in value:
        try:
            field, shape, dtype = item
            ok = (isinstance(field, str) and isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
                  and isinstance(dtype, str) and np.dtype(dtype).kind in "biuf")
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise RemoteError(f"{name}: {show(item)} is not [name, shape (dims >= 0), numeric dtype]")
    return value


_COUNT = _int(0, MAX_BATCH)
REPLIES: Mapping[str, Mapping[str, Callable[[str, Any], Any]]] = {
    "meta": {"protocol": _int(0, 1 << 31), "fields": _fields, "batch_size": _int(1, 1 << 31), "length": _COUNT,
             "shuffle": _bool, "drop_last": _bool, "rank": _int(0, 1 << 31), "world_size": _int(1, 1 << 31),
             "part": _part, "num_batches": _COUNT, "rank_batches": _COUNT, "seed": _int(0, MAX_SEED),
             "fingerprint": _mapping},
    "batch": {"session": _int(0, MAX_SESSION), "epoch": _COUNT, "batch": _COUNT, "rows": _int(1, 1 << 31)},
    "error": {"session": _int(-1, MAX_SESSION), "message": _text, "kind": _text},
    "ping": {},
    "bye": {},
}


def check_reply(msg: Dict[str, Any], protocol: int) -> Dict[str, Any]:
    """``msg`` when every field its op needs is there and sound; RemoteError naming the field otherwise.

    A meta of another protocol version is let through: the setup check names the version."""
    op = msg["op"]
    schema = REPLIES.get(op)
    if schema is None:
        raise RemoteError(f"unknown message op={show(op)}")
    if op == "meta" and msg.get("protocol") != protocol:
        return msg
    for name, check in schema.items():
        if name not in msg:
            raise RemoteError(f"{op} lacks {name!r}")
        msg[name] = check(f"{op} {name}", msg[name])
    if op == "meta":
        batch = sum(math.prod(shape) * np.dtype(dtype).itemsize for _, shape, dtype in msg["fields"])
        if batch * msg["batch_size"] > MAX_BATCH_BYTES:
            raise RemoteError(f"meta: batches of {batch * msg['batch_size'] / 2**30:.0f} GiB are not believable")
    return msg
