"""A RemoteLoader facing a server that breaks the protocol: a named error for that server, never a hang or a crash."""
from __future__ import annotations

import copy
import json
import threading
from typing import Callable, List, Optional

import numpy as np
import pytest
import zmq
from remote_helpers import ThreadServer

from feedstock import Loader
from feedstock.errors import RemoteError
from feedstock.loaders.array import ArraySource
from feedstock.remote import RemoteLoader
from feedstock.remote.served import serve_shard


def _loader(part=(0, 1)) -> Loader:
    source = ArraySource(data=np.zeros((16, 3), np.int32), label=np.arange(16))  # 48 + 32 bytes a batch
    return serve_shard(Loader(source, batch_size=4, workers=0, shuffle=True, drop_last=True), part)


@pytest.fixture(scope="module")
def good_meta() -> dict:
    server = ThreadServer(_loader())
    try:
        return copy.deepcopy(server.server.meta)
    finally:
        server.close()


class FakeServer:
    """A ROUTER that answers each request with what ``answer(request)`` returns (lists of frames)."""

    def __init__(self, answer: Callable[[dict], List[List[bytes]]]):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.answer, self.done = answer, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            if not self.sock.poll(50):
                continue
            ident, frame = self.sock.recv_multipart()
            for frames in self.answer(json.loads(frame)):
                self.sock.send_multipart([ident, *frames])

    def close(self) -> None:
        self.done.set()
        self.thread.join(10)
        self.sock.close(0)
        self.ctx.term()


def _meta_with(meta: dict, **changes) -> bytes:
    out = {"op": "meta", **meta, **changes}
    return json.dumps({k: v for k, v in out.items() if v is not _DROP}).encode()


_DROP = object()


@pytest.mark.parametrize("changes,field", [
    ({"batch_size": "4"}, "batch_size"),
    ({"batch_size": 0}, "batch_size"),
    ({"length": -1}, "length"),
    ({"seed": 2**64}, "seed"),
    ({"shuffle": "yes"}, "shuffle"),
    ({"part": [1, 1]}, "part"),
    ({"fields": [["data", [-3], "<i4"]]}, "fields"),
    ({"fields": [["data", [3], "|O"]]}, "fields"),
    ({"fields": [["data", [3], "no-such-dtype"]]}, "fields"),
    ({"fields": "data"}, "fields"),
    ({"fields": [["data", [2**40, 2**40], "<f8"]]}, "not believable"),
    ({"fingerprint": _DROP}, "fingerprint"),
    ({"num_batches": 1e400}, "num_batches"),
])
def test_a_bad_meta_is_an_error_naming_the_server_and_field(good_meta, changes, field):
    fake = FakeServer(lambda req: [[_meta_with(good_meta, **changes)]])
    try:
        with pytest.raises(RemoteError, match=field) as info:
            RemoteLoader([fake.endpoint], connect_timeout=20)
        assert fake.endpoint in str(info.value)
    finally:
        fake.close()


@pytest.mark.parametrize("frames,match", [
    ([b"\xff\x00garbage"], "not a feedstock control message"),
    ([b"[" * 100_000], "not a feedstock control message"),
    ([b'{"op": "boom"}'], "unknown message"),
    ([b'{"op": "error", "session": -1, "kind": "loader", "message": "' + b"x" * 1_000_000 + b'"}'], "characters"),
    ([b'{"op": "error", "session": "s", "kind": "loader", "message": "m"}'], "session"),
])
def test_a_bad_reply_to_hello_is_an_error_naming_the_server(frames, match):
    fake = FakeServer(lambda req: [frames])
    try:
        with pytest.raises(RemoteError, match=match) as info:
            RemoteLoader([fake.endpoint], connect_timeout=20)
        assert fake.endpoint in str(info.value) and len(str(info.value)) < 3000
    finally:
        fake.close()


def _streaming(meta: dict, header: Optional[dict], fields: List[bytes]):
    """Answers hello with ``meta`` and start with one batch: ``header`` (None: a good one) and ``fields``."""
    def answer(req: dict) -> List[List[bytes]]:
        if req["op"] == "hello":
            return [[_meta_with(meta)]]
        if req["op"] == "start":
            good = {"op": "batch", "session": req["session"], "epoch": req["epoch"], "batch": req["batch"], "rows": 4}
            return [[json.dumps({**good, **(header or {})}).encode(), *fields]]
        return []

    return answer


@pytest.mark.parametrize("header,fields,match", [
    ({"rows": 1e400}, [bytes(48), bytes(32)], "rows"),
    ({"rows": 5000}, [bytes(48), bytes(32)], "rows"),
    ({"epoch": -1}, [bytes(48), bytes(32)], "epoch"),
    ({"batch": "0"}, [bytes(48), bytes(32)], "batch"),
    ({"batch": 3}, [bytes(48), bytes(32)], "instead of"),
    (None, [bytes(47), bytes(32)], "bytes, expected 48"),
    (None, [bytes(48)], "lacks field"),
    (None, [bytes(48), bytes(32), b"more"], "more frames"),
])
def test_a_bad_batch_is_an_error_naming_the_server(good_meta, header, fields, match):
    fake = FakeServer(_streaming(good_meta, header, fields))
    try:
        with RemoteLoader([fake.endpoint], connect_timeout=20, timeout=20) as remote:
            with pytest.raises(RemoteError, match=match) as info:
                next(iter(remote))
        assert fake.endpoint in str(info.value)
        assert "receive thread failed" not in str(info.value)
    finally:
        fake.close()


def test_one_bad_server_fails_alone_and_names_itself(good_meta):
    real = ThreadServer(_loader((0, 2)))
    fake = FakeServer(lambda req: [[_meta_with({**good_meta, "part": [1, 2]}, batch_size=True)]])
    try:
        with pytest.raises(RemoteError, match="batch_size=True") as info:
            RemoteLoader([real.endpoint, fake.endpoint], connect_timeout=20)
        assert fake.endpoint in str(info.value) and real.endpoint not in str(info.value)
    finally:
        fake.close()
        real.close()
