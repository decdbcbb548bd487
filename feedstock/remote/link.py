"""The client's receive thread: one DEALER per server, credits, reconnects, batches into preallocated buffers.

Everything that touches a socket runs in this thread. The consumer (the
RemoteLoader, in the trainer's thread) hands it commands through a queue and a
wake-up pipe, and takes received batches from per-server ``ready`` queues under
one condition variable. A batch's frames are received straight into one of the
server's preallocated buffers (``recv_into``; the GIL is released while ZeroMQ
copies), so the batch memory has a fixed address a GPU can pin.
"""
from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from ..errors import RemoteError, RemoteSetupError, ServerLost
from . import protocol
from .peer import Peer, Pos, Ready
from .protocol import tune
from .replies import check_reply
from .security import CurveKey, check_endpoint, client_curve

log = logging.getLogger(__name__)

POLL_MS = 100
HELLO_EVERY = 1.0  # seconds between hellos while a connected server has not answered
# How long a server that is busy with another client is asked again before that is an error: the
# other may be this process's previous RemoteLoader, whose goodbye is still on its way.
BUSY_GRACE = 3.0
_FAILED = ("EVENT_HANDSHAKE_FAILED_AUTH", "EVENT_HANDSHAKE_FAILED_PROTOCOL", "EVENT_HANDSHAKE_FAILED_NO_DETAIL")


class Link:
    """The receive thread and the state it shares with the consumer (guarded by ``cond``)."""

    def __init__(self, endpoints: List[str], *, heartbeat: float, reconnect: float, zero_copy: bool = False,
                 curve_server_key: Optional[CurveKey] = None, curve_keys: Optional[str] = None):
        self.peers = [Peer(ep) for ep in endpoints]
        # how servers name this client (to others it refuses): host, pid and a token of this loader
        self.client = f"{socket.gethostname()[:64]} pid {os.getpid()} #{secrets.token_hex(3)}"
        self.zero_copy = zero_copy
        self.fields: List[Tuple[str, Tuple[int, ...], np.dtype]] = []  # set by the consumer before any start
        self.reconnect = reconnect
        self.cond = threading.Condition()
        self.commands: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
        self.closing = False
        self.error: Optional[BaseException] = None  # the thread itself failed
        self.ctx = zmq.Context()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        try:
            for peer in self.peers:
                peer.sock = self.ctx.socket(zmq.DEALER)
                tune(peer.sock, heartbeat)
                peer.sock.setsockopt(zmq.IMMEDIATE, 1)  # nothing queues for a server that is not there
                peer.sock.setsockopt(zmq.RECONNECT_IVL, 100)
                peer.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
                if curve_server_key is not None:
                    client_curve(peer.sock, curve_server_key, curve_keys)
                events = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
                for name in _FAILED:
                    events |= getattr(zmq, name)
                peer.monitor = peer.sock.get_monitor_socket(events)
                check_endpoint(peer.endpoint)
                try:
                    peer.sock.connect(peer.endpoint)
                except zmq.ZMQError as exc:
                    raise ValueError(f"endpoint {peer.endpoint!r}: {exc.strerror}; expected tcp://HOST:PORT "
                                     "of a `feedstock serve`") from None
        except BaseException:
            self._close_sockets()
            raise
        self.thread = threading.Thread(target=self._main, name="feedstock-remote", daemon=True)
        self.thread.start()

    # ----- consumer side ----------------------------------------------------------------------------
    def command(self, *cmd: object) -> None:
        self.commands.put(cmd)
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # closed
            pass

    def start(self, positions: List[Pos], seed: int) -> None:
        """(Re)start every server's session at ``positions``; returns once batches of older sessions are gone."""
        done = threading.Event()
        self.command("start", positions, seed, done)
        while not done.wait(0.5):
            if not self.thread.is_alive():
                raise self.error or RemoteError("the remote feed's receive thread is not running")

    def close(self) -> None:
        """Stop the thread (it tells the servers), close sockets and the context (idempotent)."""
        if self.closing:
            return
        self.closing = True
        self.command("close")
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(10)
        self._close_sockets()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _close_sockets(self) -> None:
        for peer in self.peers:
            for s in (peer.monitor, peer.sock):
                if s is not None and not s.closed:
                    # a little linger lets the stop go out, so the server is free at once for the next client
                    s.close(linger=200 if s is peer.sock else 0)
        self.ctx.term()

    # ----- the thread ---------------------------------------------------------------------------------
    def _main(self) -> None:
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        for peer in self.peers:
            poller.register(peer.sock, zmq.POLLIN)
            poller.register(peer.monitor, zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll(POLL_MS))
                if self._wake_r in events:
                    self._drain_wake()
                if not self._run_commands():
                    break
                for peer in self.peers:
                    if events.get(peer.monitor):
                        self._monitor(peer)
                    if events.get(peer.sock):
                        self._receive(peer)
                self._timers()
        except Exception as exc:  # a bug or a protocol break: the consumer raises it
            log.exception("the remote feed's receive thread failed")
            with self.cond:
                self.error = exc if isinstance(exc, RemoteError) else RemoteError(f"receive thread failed: {exc!r}")
                self.cond.notify_all()
        finally:
            for peer in self.peers:
                if peer.meta is not None and peer.want is not None:
                    self._send(peer, protocol.encode("stop", session=peer.session))

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _run_commands(self) -> bool:
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                return True
            if cmd[0] == "close":
                return False
            if cmd[0] == "release":
                peer = self.peers[cmd[1]]
                peer.free.append(cmd[2])
                # the current session's START counted only the buffers free then: this one is a new credit
                if peer.connected and peer.want is not None:
                    self._send(peer, protocol.encode("credit", session=peer.session, n=1))
            elif cmd[0] == "start":
                self._start_all(cmd[1], cmd[2])
                cmd[3].set()

    def _start_all(self, positions: List[Pos], seed: int) -> None:
        with self.cond:
            for peer, pos in zip(self.peers, positions):
                peer.session += 1
                while peer.ready:
                    peer.free.append(peer.ready.popleft().slot)
                peer.want, peer.seed = pos, seed
        for peer in self.peers:
            if peer.connected and peer.meta is not None:
                self._send_start(peer)

    def _send_start(self, peer: Peer) -> None:
        epoch, k = peer.want  # type: ignore[misc]
        self._send(peer, protocol.encode("start", session=peer.session, seed=peer.seed, epoch=epoch, batch=k,
                                         credits=len(peer.free), client=self.client))

    def _send(self, peer: Peer, frame: bytes) -> None:
        try:
            peer.sock.send(frame, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # not connected: hello/start are sent again on reconnect
            log.debug("%s: could not send (%s)", peer.endpoint, exc)

    def _monitor(self, peer: Peer) -> None:
        while peer.monitor.poll(0):
            event = recv_monitor_message(peer.monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                peer.connected, peer.hello_at = True, time.monotonic()
                self._send(peer, protocol.encode("hello", client=self.client))
            elif event == zmq.EVENT_DISCONNECTED:
                self._lost(peer, "disconnected")
            elif any(event == getattr(zmq, n) for n in _FAILED):
                with self.cond:
                    peer.error = RemoteSetupError(
                        f"{peer.endpoint}: the CURVE handshake failed ({zmq.Event(event).name}): check the "
                        "server's public key (curve_server_key) and that the server admits this client's key")
                    self.cond.notify_all()

    def _lost(self, peer: Peer, why: str) -> None:
        peer.connected = False
        if peer.lost_at is None:
            peer.lost_at = time.monotonic()
            log.warning("remote feed: %s %s; waiting up to %.0f s for it to come back", peer.name, why,
                        self.reconnect)

    def _timers(self) -> None:
        now = time.monotonic()
        for peer in self.peers:
            if peer.connected and peer.meta is None and now - peer.hello_at > HELLO_EVERY:
                peer.hello_at = now
                self._send(peer, protocol.encode("hello", client=self.client))
            if peer.lost_at is not None and now - peer.lost_at > self.reconnect and peer.error is None:
                with self.cond:
                    peer.error = ServerLost(
                        f"remote feed server {peer.name} has been unreachable for {now - peer.lost_at:.0f} s "
                        f"(next batch wanted: epoch {peer.want[0] if peer.want else '-'} batch "
                        f"{peer.want[1] if peer.want else '-'}); restart it with the same settings to resume, "
                        "or raise reconnect=")
                    self.cond.notify_all()

    # ----- messages -----------------------------------------------------------------------------------
    def _receive(self, peer: Peer) -> None:
        while True:
            try:
                header = peer.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = check_reply(protocol.decode(header), protocol.PROTOCOL)
                if msg["op"] == "batch":
                    self._batch(peer, msg)
                    continue
            except RemoteError as exc:  # this server broke the protocol: its error, not the others'
                _skip_rest(peer.sock)
                self._fail(peer, exc if peer.name in str(exc) else RemoteError(f"{peer.name} sent a bad "
                                                                             f"message: {exc}"))
                continue
            op = msg["op"]
            _skip_rest(peer.sock)
            if op == "meta":
                self._meta(peer, msg)
            elif op == "error":
                kind = RemoteSetupError if msg.get("kind") == "busy" else RemoteError
                if kind is RemoteSetupError and self._busy_wait(peer):
                    continue  # asked again by _timers with the next hello
                with self.cond:
                    peer.error = kind(f"remote feed server {peer.name}: {msg.get('message')}")
                    self.cond.notify_all()
            elif op == "bye":
                self._lost(peer, "shut down")
            # "ping": the server checking that we are still here

    def _fail(self, peer: Peer, exc: RemoteError) -> None:
        with self.cond:
            if peer.error is None:
                peer.error = exc
                log.error("remote feed: %s", exc)
            self.cond.notify_all()

    def _busy_wait(self, peer: Peer) -> bool:
        """Whether to ask a busy server again (its hello answered "busy" only for a little while)."""
        if peer.meta is not None:
            return False  # a start refused mid-stream: another client took the server meanwhile
        now = time.monotonic()
        if peer.busy_since is None:
            peer.busy_since = now
        return now - peer.busy_since < BUSY_GRACE

    def _meta(self, peer: Peer, meta: Dict[str, Any]) -> None:
        meta.pop("op", None)
        peer.busy_since = None
        with self.cond:
            if peer.meta is None:
                peer.meta = meta
            else:
                changed = protocol.same_server(peer.meta, meta)
                if changed:
                    peer.error = RemoteSetupError(f"{peer.name} came back serving something else: {changed}")
            if peer.lost_at is not None:
                peer.lost_at = None
                peer.reconnects += 1
                if isinstance(peer.error, ServerLost):
                    peer.error = None
                log.warning("remote feed: %s is back", peer.name)
            self.cond.notify_all()
        if peer.want is not None and peer.error is None:
            peer.session += 1  # batches of the old connection still in flight are dropped
            self._send_start(peer)

    def _batch(self, peer: Peer, msg: Dict[str, Any]) -> None:
        if msg.get("session") != peer.session or peer.want is None:
            _skip_rest(peer.sock)  # a session we have since replaced
            return
        pos = (msg["epoch"], msg["batch"])
        if pos != peer.want or not peer.free:
            _skip_rest(peer.sock)
            what = f"batch {pos} instead of {peer.want}" if pos != peer.want else "a batch beyond its credits"
            raise RemoteError(f"{peer.name} sent {what}: protocol error")
        if peer.meta is None or msg["rows"] > peer.meta["batch_size"]:
            raise RemoteError(f"{peer.name} sent a batch of {msg['rows']} rows before its meta or beyond its "
                              "batch_size: protocol error")
        slot, rows = peer.free.pop(), msg["rows"]
        frames: Optional[List[zmq.Frame]] = [] if self.zero_copy else None
        nbytes = 0
        for name, shape, dtype in self.fields:
            if not peer.sock.rcvmore:
                raise RemoteError(f"{peer.name}: batch {pos} lacks field {name!r}")
            need = rows * int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if frames is None:
                got = peer.sock.recv_into(peer.buffers[slot][name].reshape(-1).view(np.uint8)[:need])
            else:
                frames.append(peer.sock.recv(copy=False))
                got = len(frames[-1])
            if got != need:
                raise RemoteError(f"{peer.name}: field {name!r} of batch {pos} has {got} bytes, expected {need}")
            nbytes += need
        if peer.sock.rcvmore:
            raise RemoteError(f"{peer.name}: batch {pos} has more frames than fields")
        with self.cond:
            peer.ready.append(Ready(pos[0], pos[1], slot, rows, frames))
            peer.want = peer.next_pos(pos)
            peer.received += 1
            peer.bytes += nbytes
            self.cond.notify_all()


def _skip_rest(sock: zmq.Socket) -> None:
    while sock.rcvmore:
        sock.recv(copy=False)
