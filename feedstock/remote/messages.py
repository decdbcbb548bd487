"""The requests a feed server accepts, validated field by field: type, range, nothing missing, nothing extra.

A server takes control messages from anyone who can reach its port, so every
field is checked before it is used: an integer field must be a JSON integer
(not a bool, a float such as ``1e400`` or ``NaN``, nor a string) within its
range, and a message must carry exactly its op's fields. Anything else is a
:class:`BadRequest`, which the server answers with an ``error`` reply and logs,
then goes on serving.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, Mapping

from ..errors import RemoteError
from ..loaders.strings import cut
from ..rng import MAX_EPOCH, MAX_SEED

MAX_CONTROL_BYTES = 4096  # requests are well under 200 bytes: a bigger frame is not one
MAX_FRAME_BYTES = 1 << 20  # ZeroMQ drops a peer that sends a larger frame (MAXMSGSIZE) unread
MAX_CREDITS = 1024  # receive buffers one client may hold (a RemoteLoader's prefetch): below the send HWM
MAX_SESSION = 2**63
MAX_BATCH = 2**40
MAX_CLIENT_CHARS = 200
_SHOWN = 60  # characters of a bad value quoted back


class BadRequest(RemoteError):
    """A control message a server cannot act on; ``session`` is the one it named (or -1)."""

    def __init__(self, message: str, *, session: int = -1, kind: str = "bad_request"):
        super().__init__(message)
        self.session, self.kind = session, kind


def show(value: Any) -> str:
    """``repr(value)``, cut: an error must not echo a large input back."""
    return cut(repr(value), _SHOWN)


def _integer(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if type(value) is not int or not lo <= value < hi:  # bool is an int subclass: refused too
            raise ValueError(f"{name}={show(value)} must be an integer in [{lo}, {_bound(hi)})")
        return value

    return check


def _bound(hi: int) -> str:
    bits = hi.bit_length() - 1
    return f"2**{bits}" if hi == 1 << bits and bits > 16 else str(hi)


def _client(name: str, value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CLIENT_CHARS or not value.isprintable():
        raise ValueError(f"{name}={show(value)} must be a printable string of 1 to {MAX_CLIENT_CHARS} characters")
    return value


_SESSION = _integer(0, MAX_SESSION)
REQUESTS: Mapping[str, Mapping[str, Callable[[str, Any], Any]]] = {
    "hello": {"client": _client},
    "start": {"session": _SESSION, "seed": _integer(0, MAX_SEED), "epoch": _integer(0, MAX_EPOCH),
              "batch": _integer(0, MAX_BATCH), "credits": _integer(0, MAX_CREDITS + 1), "client": _client},
    "credit": {"session": _SESSION, "n": _integer(1, MAX_CREDITS + 1)},
    "stop": {"session": _SESSION},
}


def parse_request(frame: bytes) -> Dict[str, Any]:
    """The request in ``frame`` with every field checked; BadRequest naming what is wrong otherwise."""
    if len(frame) > MAX_CONTROL_BYTES:
        raise BadRequest(f"a control message of {len(frame)} bytes (requests are at most {MAX_CONTROL_BYTES})")
    try:
        msg = json.loads(frame)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: also a 5000-digit number
        raise BadRequest(f"not a JSON control message ({len(frame)} bytes): {show(str(exc))}") from None
    if not isinstance(msg, dict):
        raise BadRequest(f"a control message is a JSON object, got {show(msg)}")
    op = msg.get("op")
    schema = REQUESTS.get(op) if isinstance(op, str) else None
    if schema is None:
        raise BadRequest(f"op={show(op)} must be one of {sorted(REQUESTS)}")
    session = msg.get("session")
    session = session if type(session) is int and 0 <= session < MAX_SESSION else -1
    missing = [k for k in schema if k not in msg]
    extra = [k for k in msg if k != "op" and k not in schema]
    if missing or extra:
        raise BadRequest(f"{op}: " + "; ".join(
            ([f"missing field(s) {missing}"] if missing else [])
            + ([f"unexpected field(s) {show(extra)}"] if extra else [])) + f" (fields: {sorted(schema)})",
            session=session)
    out: Dict[str, Any] = {"op": op}
    for name, check in schema.items():
        try:
            out[name] = check(name, msg[name])
        except ValueError as exc:
            raise BadRequest(f"{op}: {exc}", session=session) from None
    return out
