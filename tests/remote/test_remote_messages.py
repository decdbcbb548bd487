"""A feed server survives any message: every field of every request fuzzed, garbage frames, a second client."""
from __future__ import annotations

import json
import time
from typing import Dict, List, Optional

import numpy as np
import pytest
import zmq
from remote_helpers import ThreadServer, assert_same_batches, copies

from feedstock import Loader
from feedstock.errors import RemoteSetupError
from feedstock.loaders.array import ArraySource
from feedstock.remote import RemoteLoader
from feedstock.remote.messages import MAX_CREDITS, REQUESTS, parse_request

N, BATCH = 48, 4  # 12 batches per epoch


def _loader() -> Loader:
    data = np.arange(N * 3, dtype=np.int32).reshape(N, 3)
    return Loader(ArraySource(data=data, label=np.arange(N)), batch_size=BATCH, workers=0, shuffle=True, seed=3,
                  drop_last=True)


def _want(epochs: int = 1) -> List[Dict[str, np.ndarray]]:
    with _loader() as local:
        return [b for _ in range(epochs) for b in copies(local)]


VALID = {
    "hello": {"client": "fuzzer"},
    "start": {"session": 1, "seed": 3, "epoch": 0, "batch": 0, "credits": 2, "client": "fuzzer"},
    "credit": {"session": 1, "n": 1},
    "stop": {"session": 1},
}
# JSON text for a field's value: wrong types, out of range, non-finite, huge
BAD_VALUES = ["1e400", "-1e400", "Infinity", "-Infinity", "NaN", "-1", '"5"', "null", "true", "false", "1.5",
              "2.0", "1e3", str(2**64), str(2**200), "9" * 5000, "[]", "[1]", "{}", '{"n": 1}',
              '"' + "x" * 3000 + '"', '""']


def _frame(op: str, field: Optional[str] = None, raw: Optional[str] = None, drop: Optional[str] = None,
           extra: Optional[str] = None) -> bytes:
    """The JSON text of a request, one field replaced by raw JSON text, dropped or added."""
    parts = [f'"op": "{op}"']
    for name, value in VALID[op].items():
        if name == drop:
            continue
        parts.append(f'"{name}": {raw if name == field else json.dumps(value)}')
    if extra:
        parts.append(f'"{extra}": 1')
    return ("{" + ", ".join(parts) + "}").encode()


def _fuzz_frames() -> List[List[bytes]]:
    out: List[List[bytes]] = []
    for op, fields in VALID.items():
        for name in fields:
            if name == "client":
                out += [[_frame(op, name, raw)] for raw in ("5", "null", '""', '"' + "c" * 201 + '"', '"a\\u0000b"',
                                                            '["x"]', "NaN")]
            else:
                out += [[_frame(op, name, raw)] for raw in BAD_VALUES]
            out.append([_frame(op, drop=name)])
        out.append([_frame(op, extra="surprise")])
        out.append([_frame(op, extra="op2")])
    garbage = [b"", b"\xff\xfe\x00", b"not json", b"[]", b'"start"', b"{}", b"null", b'{"op": 5}',
               b'{"op": "bogus"}', b'{"op": null}', b'{"op": "hello"', b"[" * 50_000, b'{"a":' * 30_000,
               b"7" * 5000, b"x" * 100_000, "é".encode("utf-16")]
    out += [[g] for g in garbage]
    out += [[b'{"op": "hello", "client": "x"}', b"second frame"], [b"", b"", b""]]
    out += [[_frame("hello")], [_frame("start")]]  # well formed, but another client holds the stream
    return out


class Raw:
    """A bare DEALER: sends what it is told, collects what comes back."""

    def __init__(self, endpoint: str):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)

    def send(self, frames: List[bytes]) -> None:
        self.sock.send_multipart(frames)

    def replies(self, count: int, timeout: float = 20.0) -> List[dict]:
        got, deadline = [], time.monotonic() + timeout
        while len(got) < count and self.sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            frames = self.sock.recv_multipart()
            got.append(json.loads(frames[0]))
        return got

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def server():
    s = ThreadServer(_loader())
    yield s
    s.close()


def test_every_bad_message_gets_an_error_reply_while_another_client_is_served(server):
    frames = _fuzz_frames()
    want = _want()
    with RemoteLoader([server.endpoint], prefetch=3, timeout=30) as remote:
        it = iter(remote)
        got = copies(it, 2)
        raw = Raw(server.endpoint)
        try:
            for f in frames:
                raw.send(f)
            replies = raw.replies(len(frames))
            got += copies(it)  # the attached client goes on undisturbed
        finally:
            raw.close()
        assert_same_batches(got, want)
        assert server.thread.is_alive()
    assert len(replies) == len(frames)
    assert all(r["op"] == "error" for r in replies), [r for r in replies if r["op"] != "error"][:3]
    assert all(len(r["message"]) < 600 for r in replies)  # a 100 KB input is not echoed back
    kinds = {r["kind"] for r in replies}
    assert kinds == {"bad_request", "busy"}  # busy: the well-formed hellos and starts, another client holds it
    assert server.server.bad_messages == len(frames)


@pytest.mark.parametrize("op", sorted(VALID))
def test_each_field_is_named_in_the_reply(server, op):
    raw = Raw(server.endpoint)
    try:
        for name in VALID[op]:
            for raw_value in ("1e400", "NaN", "-1", '"5"' if name != "client" else '""'):
                raw.send([_frame(op, name, raw_value)])
                (reply,) = raw.replies(1)
                assert reply["kind"] == "bad_request" and f"{name}=" in reply["message"], reply
            raw.send([_frame(op, drop=name)])
            (reply,) = raw.replies(1)
            assert "missing" in reply["message"] and repr(name) in reply["message"], reply
    finally:
        raw.close()


def test_the_attached_client_sending_bad_credits_keeps_its_stream(server):
    """Bad credits from the client that holds the stream: refused one by one, the stream goes on."""
    raw = Raw(server.endpoint)
    try:
        raw.send([_frame("start")])  # session 1, 2 credits
        batches = [r for r in raw.replies(2) if r["op"] == "batch"]
        for value in ("1e400", "Infinity", "NaN", "-5", '"3"', "0", str(MAX_CREDITS + 1), str(2**70)):
            raw.send([_frame("credit", "n", value)])
        raw.send([b'{"op": "credit", "session": 1, "n": 1}'])
        seen = raw.replies(9)
        errors = [r for r in seen if r["op"] == "error"]
        assert len(errors) == 8 and all(e["session"] == 1 and "n=" in e["message"] for e in errors)
        assert [r["batch"] for r in seen if r["op"] == "batch"] == [2]  # the one good credit: one batch
        for _ in range(2):  # credits beyond the cap in total are refused too
            raw.send([_frame("credit", "n", str(MAX_CREDITS))])
        assert any(r["op"] == "error" and "more than" in r["message"] for r in raw.replies(10))
        raw.send([_frame("stop")])
    finally:
        raw.close()
    assert len(batches) == 2
    with RemoteLoader([server.endpoint], timeout=30) as remote:  # the server is free again
        assert_same_batches(copies(remote), _want())


def test_a_bad_start_of_the_attached_client_leaves_its_stream_as_it_was(server):
    raw = Raw(server.endpoint)
    try:
        raw.send([_frame("start")])
        assert [r["batch"] for r in raw.replies(2)] == [0, 1]
        for field, value in (("seed", "NaN"), ("batch", "-1"), ("credits", "1e400"), ("epoch", '"0"')):
            raw.send([_frame("start", field, value)])
        assert [r["op"] for r in raw.replies(4)] == ["error"] * 4
        raw.send([_frame("credit")])
        assert [(r["op"], r.get("batch")) for r in raw.replies(1)] == [("batch", 2)]  # the same stream, on
    finally:
        raw.close()


def test_a_start_outside_the_stream_is_refused(server):
    raw = Raw(server.endpoint)
    try:
        for field, value in (("batch", N // BATCH), ("batch", 10**9), ("epoch", 2**24), ("seed", 2**64)):
            raw.send([_frame("start", field, str(value))])
            (reply,) = raw.replies(1)
            assert reply["op"] == "error" and f"{field}=" in reply["message"], reply
    finally:
        raw.close()


def test_parse_request_round_trips_valid_messages():
    for op, fields in VALID.items():
        assert parse_request(json.dumps({"op": op, **fields}).encode()) == {"op": op, **fields}
    assert set(VALID) == set(REQUESTS)


# ----- a second client --------------------------------------------------------------------------------
def test_a_second_client_is_refused_naming_the_first(server):
    want = _want(2)
    with RemoteLoader([server.endpoint], prefetch=2, timeout=30) as first:
        it = iter(first)
        got = copies(it, 3)
        with pytest.raises(RemoteSetupError, match="already streams to client") as info:
            RemoteLoader([server.endpoint], connect_timeout=10)
        assert repr(first._link.client) in str(info.value) and "127.0.0.1" in str(info.value)
        got += copies(it) + copies(first)  # no takeover: the first client's stream goes on
    assert_same_batches(got, want)
    for _ in range(3):  # the first has gone: the server is free for whichever client comes next
        with RemoteLoader([server.endpoint], timeout=30) as second:
            assert_same_batches(copies(second), want[:N // BATCH])


def test_a_second_client_starting_without_hello_is_refused(server):
    with RemoteLoader([server.endpoint], prefetch=2, timeout=30) as first:
        it = iter(first)
        next(it)
        raw = Raw(server.endpoint)
        try:
            raw.send([_frame("start")])
            (reply,) = raw.replies(1)
        finally:
            raw.close()
        assert reply["kind"] == "busy" and first._link.client in reply["message"]
        assert len(copies(it)) == N // BATCH - 1


def test_a_client_that_vanished_does_not_block_the_next(server):
    raw = Raw(server.endpoint)
    raw.send([_frame("start")])
    assert [r["op"] for r in raw.replies(2)] == ["batch", "batch"]
    raw.close()  # no stop: a crashed trainer; a busy answer meanwhile is asked again for a while
    with RemoteLoader([server.endpoint], timeout=30) as remote:
        assert_same_batches(copies(remote), _want())


def test_the_same_client_reconnecting_takes_its_stream_back(server):
    """A new connection (new ZeroMQ identity) with the same client name is the same RemoteLoader."""
    old, new = Raw(server.endpoint), Raw(server.endpoint)
    try:
        old.send([_frame("start")])
        assert len(old.replies(2)) == 2
        new.send([_frame("start", "batch", "5")])
        assert [(r["op"], r.get("batch")) for r in new.replies(2)] == [("batch", 5), ("batch", 6)]
    finally:
        old.close()
        new.close()


def test_a_remote_error_for_a_bad_request_reaches_the_client_not_the_server(server):
    raw = Raw(server.endpoint)
    try:
        raw.send([b'{"op": "start", "session": 1}'])
        (reply,) = raw.replies(1)
    finally:
        raw.close()
    assert reply == {"op": "error", "session": 1, "kind": "bad_request", "message": reply["message"]}
    with RemoteLoader([server.endpoint], timeout=30) as remote:
        assert len(copies(remote)) == N // BATCH


def test_an_oversized_frame_drops_only_its_sender(server, caplog):
    with RemoteLoader([server.endpoint], prefetch=2, timeout=30) as remote:
        it = iter(remote)
        got = copies(it, 1)
        raw = Raw(server.endpoint)
        try:
            for _ in range(5000):  # a flood of small bad messages: each answered
                raw.send([b'{"op": "credit", "session": -1, "n": 1}'])
            assert [r["kind"] for r in raw.replies(5000)] == ["bad_request"] * 5000
            raw.send([b"{" + b" " * (2 << 20) + b"}"])  # beyond MAXMSGSIZE: ZeroMQ drops the connection unread
            raw.send([b"{}"])
        finally:
            raw.close()
        got += copies(it)
    assert_same_batches(got, _want())
    assert server.thread.is_alive()
    refusals = [r for r in caplog.records if "refused a control message" in r.getMessage()]
    assert len(refusals) <= 30  # rate-limited: a flood does not flood the log


def test_a_client_that_stops_reading_cannot_keep_the_server_from_stopping():
    rows = np.zeros((32, 1 << 20), np.uint8)  # 4 MiB batches: socket buffers fill after a few
    server = ThreadServer(Loader(ArraySource(data=rows), batch_size=4, workers=0, shuffle=False, drop_last=True))
    raw = Raw(server.endpoint)
    raw.sock.rcvhwm = 1
    try:
        raw.send([_frame("start", "credits", "64")])  # and never read
        deadline = time.monotonic() + 20
        while server.server.sent < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        started = time.monotonic()
        server.close()  # stop(), join the serving thread (30 s at most), close()
        assert not server.thread.is_alive() and time.monotonic() - started < 10
    finally:
        raw.close()
