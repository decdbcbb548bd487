"""Wire format of the remote feed: small JSON control messages; a batch is a header frame plus one frame per array.

Client -> server (DEALER -> ROUTER): ``hello``, ``start``, ``credit``, ``stop``;
server -> client: ``meta``, ``batch`` (a header frame, then one frame per field,
sent without copying), ``error``, ``ping``, ``bye``. Every field is required and
checked (:mod:`.messages`). Flow control: the server sends a batch only while it
holds a credit, so no queue grows beyond the client's ``prefetch`` buffers;
``tune`` sets the socket options both ends share. docs/architecture.md ("The
remote feed's wire format") describes every message.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import zmq

from ..errors import RemoteError, RemoteSetupError
from ..spec import Spec
from .fingerprint import first_difference

if TYPE_CHECKING:
    from ..pipeline.loader import Loader

PROTOCOL = 2
Fields = List[Tuple[str, Tuple[int, ...], np.dtype]]

# meta keys that every server of one stream must share (part and seed are checked separately)
SHARED_KEYS = ("protocol", "fields", "batch_size", "length", "shuffle", "drop_last", "rank", "world_size",
               "rank_batches")


def encode(op: str, **body: object) -> bytes:
    return json.dumps({"op": op, **body}, separators=(",", ":")).encode()


def decode(frame: Union[bytes, memoryview]) -> Dict[str, Any]:
    """The control message in ``frame``; RemoteError for anything that is not one."""
    try:
        msg = json.loads(bytes(frame))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RemoteError(f"not a feedstock control message ({len(bytes(frame))} bytes): {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
        raise RemoteError(f"not a feedstock control message: {str(msg)[:100]}")
    return msg


def describe_fields(spec: Spec) -> list:
    """JSON-able (name, shape, dtype) of a loader's fixed batch spec (per-sample shapes)."""
    return [[name, list(s.shape), np.dtype(s.dtype).str] for name, s in spec.items()]


def fields_of(meta: Mapping[str, Any]) -> Fields:
    return [(str(name), tuple(int(d) for d in shape), np.dtype(dtype)) for name, shape, dtype in meta["fields"]]


def make_meta(loader: Loader, fingerprint: Mapping[str, object]) -> Dict[str, object]:
    """What a server tells clients about the stream it serves."""
    s = loader.sampler
    return {"protocol": PROTOCOL, "fields": describe_fields(loader.spec), "batch_size": s.batch_size,
            "length": s.length, "shuffle": s.shuffle, "drop_last": s.drop_last, "rank": s.rank,
            "world_size": s.world_size, "part": list(s.batch_shard), "num_batches": s.num_batches,
            "rank_batches": s.rank_batches, "seed": s.seed, "fingerprint": dict(fingerprint)}


def check_metas(metas: Sequence[Mapping[str, Any]], endpoints: Sequence[str]) -> List[int]:
    """Order of ``endpoints`` by part; RemoteSetupError unless they form one feed (batch shards 0..n-1 once)."""
    first = metas[0]
    for meta, ep in zip(metas, endpoints):
        if meta.get("protocol") != PROTOCOL:
            raise RemoteSetupError(f"{ep} speaks feed protocol {meta.get('protocol')}, this client {PROTOCOL}")
        for key in SHARED_KEYS:
            if meta.get(key) != first.get(key):
                raise RemoteSetupError(f"{ep} serves {key}={meta.get(key)!r} but {endpoints[0]} serves "
                                       f"{first.get(key)!r}: servers of one feed must share the source and settings")
        differs = first_difference(first.get("fingerprint", {}), meta.get("fingerprint", {}))
        if differs:
            what, ours, theirs = differs
            raise RemoteSetupError(f"{ep} serves {what}={theirs} but {endpoints[0]} serves {what}={ours}: servers "
                                   "of one feed must share the source, transform and sampler settings")
    n = len(metas)
    parts = [tuple(m["part"]) for m in metas]
    if sorted(parts) != [(j, n) for j in range(n)]:
        raise RemoteSetupError(
            f"{n} servers must serve batch shards 0/{n} .. {n - 1}/{n} once each (`feedstock serve --batch-shard j/{n}`), got "
            + ", ".join(f"{ep}: {j}/{m}" for ep, (j, m) in zip(endpoints, parts)))
    return sorted(range(n), key=lambda i: parts[i][0])


def same_server(old: Mapping[str, object], new: Mapping[str, object]) -> Optional[str]:
    """What differs between a server's meta before and after a reconnect (None: the same stream)."""
    for key in SHARED_KEYS + ("part",):
        if old.get(key) != new.get(key):
            return f"{key} was {old.get(key)!r}, now {new.get(key)!r}"
    differs = first_difference(old.get("fingerprint", {}), new.get("fingerprint", {}))
    return None if differs is None else f"{differs[0]} was {differs[1]}, now {differs[2]}"


def tune(sock: zmq.Socket, heartbeat: float) -> None:
    """Options both ends share: no linger on close, ZMTP heartbeats, no unbounded queues."""
    sock.linger = 0
    ivl = max(1, int(heartbeat * 1000))
    sock.setsockopt(zmq.HEARTBEAT_IVL, ivl)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * ivl)
    sock.setsockopt(zmq.HEARTBEAT_TTL, 3 * ivl)
    sock.sndhwm = sock.rcvhwm = 10_000  # messages (frames count); credits keep the real depth small
