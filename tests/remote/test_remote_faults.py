"""Remote feed faults on loopback: servers killed and restarted or gone, server errors, bad setups, CURVE."""
from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest
from remote_helpers import ServeProcess, ThreadServer, assert_same_batches, copies, local_loader, serve_args

from feedstock import Loader
from feedstock.cli.main import main
from feedstock.errors import RemoteError, RemoteSetupError, ServerLost
from feedstock.fixtures.synthetic import make_raw_lmdb
from feedstock.loaders.array import ArraySource
from feedstock.remote import FeedServer, RemoteLoader
from feedstock.remote.security import check_bind, is_loopback
from feedstock.remote.served import serve_shard


@pytest.fixture(scope="module")
def lmdb_src(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("faults") / "train_lmdb")
    make_raw_lmdb(path, np.random.default_rng(6), 48, shape=(3, 16, 16))
    return path


def _port(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[1]


def test_a_killed_server_restarted_on_its_port_resumes_its_part(lmdb_src, no_leaks):
    args = [serve_args(lmdb_src, "--batch-shard", f"{j}/2") for j in range(2)]
    servers = [ServeProcess(a) for a in args]
    with local_loader(serve_args(lmdb_src)) as local:
        want = copies(local) + copies(local)
    try:
        with RemoteLoader([s.endpoint for s in servers], prefetch=2, reconnect=60) as remote:
            copies(remote)
            it = iter(remote)  # epoch 0 was consumed to its end: this is epoch 1
            servers[1].kill()  # SIGKILL: no goodbye, its workers see their owner die
            killed, endpoint = servers[1].proc.pid, servers[1].endpoint
            servers[1] = ServeProcess(args[1], bind=f"tcp://127.0.0.1:{_port(endpoint)}")
            got = copies(it)
            assert_same_batches(got, want[6:])
            assert remote.stats()["reconnects"] == 1
            assert [s["reconnects"] for s in remote.report()["servers"]] == [0, 1]
        assert _files_gone(killed)
    finally:
        for s in servers:
            s.stop()


def test_a_server_that_stays_away_raises_server_lost_naming_it(lmdb_src):
    servers = [ServeProcess(serve_args(lmdb_src, "--batch-shard", f"{j}/2")) for j in range(2)]
    try:
        with RemoteLoader([s.endpoint for s in servers], prefetch=2, reconnect=1.5, timeout=30) as remote:
            it = iter(remote)
            next(it)
            servers[1].kill()
            started = time.monotonic()
            with pytest.raises(ServerLost, match=re.escape(servers[1].endpoint) + r" \(part 1/2\)"):
                for _ in it:
                    pass
            assert time.monotonic() - started < 20  # the reconnect window, not a hang
    finally:
        for s in servers:
            s.stop()
    # its workers saw it die and removed its slot files: gone, whoever removed them (a sweep of
    # another loader on the host may come first), so this holds whatever runs beside the test
    assert _files_gone(servers[1].proc.pid)


def _files_gone(pid: int, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while [n for n in os.listdir("/dev/shm") if n.startswith(f"feedstock_{pid}_")]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class _Broken(ArraySource):
    def __getitem__(self, i):
        if i == 13:
            raise ValueError("corrupt record")
        return super().__getitem__(i)

    def read_batch(self, indices, out=None):
        return NotImplemented  # row by row, through __getitem__

    def key(self, i):
        return f"row {i}"


def test_a_server_error_reaches_the_trainer_with_the_record_key():
    src = _Broken(data=np.zeros((40, 2), np.uint8))
    server = ThreadServer(Loader(src, batch_size=4, workers=0, shuffle=False, drop_last=True))
    try:
        with RemoteLoader([server.endpoint]) as remote:
            it = iter(remote)
            assert next(it)["data"].shape == (4, 2)
            time.sleep(0.5)  # the server's error arrives behind batches 1 and 2: those are still good
            assert [next(it)["data"].shape for _ in range(2)] == [(4, 2)] * 2  # rows 4..11
            with pytest.raises(RemoteError, match="row 13") as info:
                next(it)
            assert server.endpoint in str(info.value)
    finally:
        server.close()


def _loader(part=(0, 1), n=40, **kw):
    kw = {"shuffle": True, "drop_last": True, **kw}  # the Loader defaults these tests were written for
    return serve_shard(Loader(ArraySource(data=np.zeros((n, 2), np.uint8)), batch_size=4, workers=0, **kw), part)


def test_servers_of_different_streams_are_refused():
    pairs = [
        ((_loader((0, 2)), _loader((0, 2))), "batch shards 0/2 .. 1/2 once each"),
        ((_loader((0, 2)), _loader((1, 2), n=44)), "length=44"),
        ((_loader((0, 1)), _loader((0, 1))), "batch shards 0/2 .. 1/2"),
    ]
    for loaders, message in pairs:
        servers = [ThreadServer(lo) for lo in loaders]
        try:
            with pytest.raises(RemoteSetupError, match=re.escape(message)):
                RemoteLoader([s.endpoint for s in servers])
        finally:
            for s in servers:
                s.close()


def test_different_seeds_need_the_client_to_choose():
    servers = [ThreadServer(_loader((j, 2), seed=j)) for j in range(2)]
    try:
        with pytest.raises(RemoteSetupError, match=r"different seeds \[0, 1\]"):
            RemoteLoader([s.endpoint for s in servers])
        with RemoteLoader([s.endpoint for s in servers], seed=5) as remote:
            assert remote.state_dict()["seed"] == 5
            assert len(list(remote)) == 10
    finally:
        for s in servers:
            s.close()


def test_nobody_listening_is_reported_not_waited_for_forever():
    started = time.monotonic()
    with pytest.raises(ServerLost, match=r"no answer from tcp://127\.0\.0\.1:9 within 1 s"):
        RemoteLoader(["tcp://127.0.0.1:9"], connect_timeout=1)
    assert time.monotonic() - started < 10


def test_loopback_only_without_curve():
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("tcp://localhost:1") and is_loopback("ipc:///x")
    assert not is_loopback("tcp://*:5555") and not is_loopback("tcp://10.0.0.2:5555")
    with pytest.raises(ValueError, match="without CURVE"):
        check_bind("tcp://*:5555", curve=False, insecure=False)
    check_bind("tcp://*:5555", curve=True, insecure=False)
    check_bind("tcp://*:5555", curve=False, insecure=True)
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        is_loopback("http://x")


def test_serve_cli_refuses_an_open_bind_and_names_it(lmdb_src, capsys):
    assert main(["serve", lmdb_src, "--bind", "tcp://0.0.0.0:5599"]) == 1
    assert "binding tcp://0.0.0.0:5599 without CURVE" in capsys.readouterr().err


def test_curve_encrypts_and_admits_only_known_clients(tmp_path):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    assert main(["keygen", str(keys), "--name", "server", "--name", "client", "--name", "stranger"]) == 0
    allowed.mkdir()
    (allowed / "client.key").write_bytes((keys / "client.key").read_bytes())
    server = ThreadServer(_loader(), bind="tcp://127.0.0.1:*", curve_secret=str(keys / "server.key_secret"),
                          curve_clients=str(allowed))
    try:
        with RemoteLoader([server.endpoint], curve_server_key=str(keys / "server.key"),
                          curve_keys=str(keys / "client.key_secret")) as remote:
            assert [b["data"].shape for b in remote] == [(4, 2)] * 10
        with pytest.raises(RemoteSetupError, match="CURVE handshake failed"):
            RemoteLoader([server.endpoint], curve_server_key=str(keys / "server.key"),
                         curve_keys=str(keys / "stranger.key_secret"), connect_timeout=10)
        with pytest.raises((RemoteSetupError, ServerLost)):  # a plain client gets nothing from a CURVE server
            RemoteLoader([server.endpoint], connect_timeout=2)
    finally:
        server.close()
    assert oct(os.stat(keys / "server.key_secret").st_mode & 0o777) == "0o600"


def test_feed_server_refuses_bad_options():
    with pytest.raises(ValueError, match="heartbeat"):
        FeedServer(_loader(), bind="tcp://127.0.0.1:*", heartbeat=0)
    with pytest.raises(ValueError, match="curve_secret"):
        FeedServer(_loader(), bind="tcp://127.0.0.1:*", curve_clients="x")
    with pytest.raises(ValueError, match="prefetch"):
        RemoteLoader(["tcp://127.0.0.1:9"], prefetch=1)
    with pytest.raises(ValueError, match="twice"):
        RemoteLoader(["tcp://127.0.0.1:9", "tcp://127.0.0.1:9"])


def test_a_frozen_server_is_found_by_heartbeats(lmdb_src):
    """SIGSTOP: the TCP connection stays up, only ZeroMQ's heartbeats can tell the server is not answering."""
    import signal

    server = ServeProcess(serve_args(lmdb_src))
    try:
        # heartbeats of 1 s: a busy machine must not pass for a frozen server before the SIGSTOP
        with RemoteLoader([server.endpoint], prefetch=2, heartbeat=1.0, reconnect=3.0, timeout=60) as remote:
            it = iter(remote)
            next(it)
            server.proc.send_signal(signal.SIGSTOP)
            started = time.monotonic()
            with pytest.raises(ServerLost, match="unreachable"):
                for _ in it:
                    pass
            assert time.monotonic() - started < 30
    finally:
        server.proc.send_signal(signal.SIGCONT)
        server.stop()


def test_feedstock_serve_survives_hostile_messages(lmdb_src):
    """The messages that used to kill `feedstock serve` (OverflowError at the credit arithmetic, ...)."""
    import json
    import socket

    import zmq

    server = ServeProcess(serve_args(lmdb_src))
    ctx = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.linger = 0
    junk = socket.create_connection(("127.0.0.1", int(_port(server.endpoint))))
    try:
        junk.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 64)  # not ZeroMQ at all
        raw.connect(server.endpoint)
        start = '{"op": "start", "session": 1, "seed": 7, "epoch": 0, "batch": 0, "credits": %s, "client": "x"}'
        bad = [start % v for v in ("1e400", "-1e400", "NaN", "Infinity", "-3", '"4"', str(10**40), "null")]
        bad += ['{"op": "credit", "session": 1, "n": 1e400}', '{"op": "credit", "session": 1}', "{", "[[[[", ""]
        for text in bad:
            raw.send(text.encode())
        replies = []
        while len(replies) < len(bad) and raw.poll(20_000):
            replies.append(json.loads(raw.recv_multipart()[0]))
        assert [r["op"] for r in replies] == ["error"] * len(bad)
        assert server.proc.poll() is None
        with local_loader(serve_args(lmdb_src)) as local:
            want = copies(local)
        with RemoteLoader([server.endpoint], prefetch=2, timeout=60) as remote:
            assert_same_batches(copies(remote), want)
    finally:
        junk.close()
        raw.close()
        ctx.term()
        assert server.stop() == 0
    assert any("refused a control message" in line for line in server.lines)
