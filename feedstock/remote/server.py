"""FeedServer: runs a Loader on a CPU host and streams its batches to one client at a time over ZeroMQ.

The server is single-threaded Python (so its loader's workers can fork): it
polls its ROUTER socket for control messages between batches and sends a batch
whenever the client holds a credit. Batches go out without copying: each frame
is the loader's shared-memory slot itself, leased from the loader until ZeroMQ
is done with the frames (up to half the loader's slots are in flight at once,
the others are being filled).
Peers that vanish are noticed by ZeroMQ's own heartbeats (ZMTP PING/PONG, run by
its I/O thread even while this thread waits on a slow batch): their queued
messages are dropped and the stream simply waits for the next ``start``.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterator, Optional, Tuple

import zmq

from ..errors import RemoteError
from . import protocol
from .protocol import tune
from .security import check_bind, server_curve
from .served import leased

log = logging.getLogger(__name__)

POLL_MS = 200  # how often an idle server looks at its stop flag


class _Stream:
    """The one client being served: its identity, session id and unused credits."""

    def __init__(self, ident: bytes, session: int, credits: int, it: Iterator[Dict[str, Any]]):
        self.ident, self.session, self.credits, self.it = ident, session, credits, it


class FeedServer:
    """Serve ``loader``'s batches at ``bind``; ``run()`` until ``stop()`` (or Ctrl-C), then ``close()``."""

    def __init__(self, loader: Any, *, bind: str = "tcp://127.0.0.1:5555", curve_secret: Optional[str] = None,
                 curve_clients: Optional[str] = None, insecure: bool = False, heartbeat: float = 1.0):
        if heartbeat <= 0:
            raise ValueError(f"{heartbeat=} must be positive (seconds)")
        if curve_clients and not curve_secret:
            raise ValueError("curve_clients (allowed client keys) needs curve_secret (the server's key)")
        check_bind(bind, curve=bool(curve_secret), insecure=insecure)
        self.loader = loader
        self.meta = protocol.make_meta(loader)
        self._fields = [name for name, _, _ in protocol.fields_of(self.meta)]  # frame order of every batch
        loader.start()  # fork the workers now, before ZeroMQ and the authenticator start threads
        self._ctx = zmq.Context()
        self._auth = None
        self.sock = self._ctx.socket(zmq.ROUTER)
        try:
            tune(self.sock, heartbeat)
            if curve_secret:
                server_curve(self.sock, curve_secret)
                if curve_clients:
                    self._auth = _authenticator(self._ctx, curve_clients)
            self.sock.bind(bind)
        except BaseException:
            self.close()
            raise
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stream: Optional[_Stream] = None
        # batches ZeroMQ may still be reading: (tracker, release of the loader slot)
        self._in_flight: Deque[Tuple[zmq.MessageTracker, Callable[[], None]]] = collections.deque()
        slots = loader.prefetch if loader.workers > 0 else 1
        self._max_in_flight = max(0, min(slots - 1, slots // 2))  # 0: wait for each send before the next
        self._stop = threading.Event()
        self.sent = 0

    def stop(self) -> None:
        """Ask ``run()`` to return (thread- and signal-safe)."""
        self._stop.set()

    def run(self, *, idle_exit: Optional[float] = None) -> None:
        """Serve until ``stop()``; ``idle_exit``: also return after that many seconds with no client."""
        log.info("serving %s at %s", self.loader.source, self.endpoint)
        last_active = time.monotonic()
        while not self._stop.is_set():
            busy = self._stream is not None and self._stream.credits > 0
            if self.sock.poll(0 if busy else POLL_MS, zmq.POLLIN):
                self._drain()
            if self._stream is not None:
                last_active = time.monotonic()
                if self._stream.credits > 0:
                    self._send_next()
            elif idle_exit is not None and time.monotonic() - last_active > idle_exit:
                return

    # ----- control messages ---------------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                log.warning("ignoring a message of %d frames", len(frames))
                continue
            try:
                self._handle(frames[0], protocol.decode(frames[1]))
            except (RemoteError, KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring a bad control message: %s", exc)
                self._send(frames[0], protocol.encode("error", session=-1, message=f"bad request: {exc}"))

    def _handle(self, ident: bytes, msg: Dict[str, Any]) -> None:
        op = msg["op"]
        if op == "hello":
            self._send(ident, protocol.encode("meta", **self.meta))
        elif op == "start":
            self._start(ident, msg)
        elif op == "credit":
            if self._stream is not None and self._stream.session == msg["session"] and self._stream.ident == ident:
                self._stream.credits += int(msg["n"])
        elif op == "stop":
            if self._stream is not None and self._stream.ident == ident:
                self._end_stream()
        else:
            raise ValueError(f"unknown op {op!r}")

    def _start(self, ident: bytes, msg: Dict[str, Any]) -> None:
        self._end_stream()
        self._wait_sent(0)  # a repositioned loader may refill any slot, also those still being sent
        state = dict(self.loader.state_dict(), seed=int(msg["seed"]), epoch=int(msg["epoch"]),
                     next_batch=int(msg["batch"]))
        self.loader.load_state_dict(state)
        self._stream = _Stream(ident, int(msg["session"]), int(msg["credits"]), leased(self.loader))
        log.info("stream %d: epoch %d batch %d for client %s", msg["session"], msg["epoch"], msg["batch"],
                 ident.hex())

    def _end_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.it.close()  # abandoned pass: work in flight stays for a pass that continues there

    # ----- batches --------------------------------------------------------------------------------
    def _send_next(self) -> None:
        stream = self._stream
        assert stream is not None
        self._wait_sent(self._max_in_flight)
        try:
            pos = self.loader.state_dict()
            try:
                batch, release = next(stream.it)
            except StopIteration:  # an epoch ended: the stream goes on with the next
                stream.it = leased(self.loader)
                pos = self.loader.state_dict()
                batch, release = next(stream.it)
        except Exception as exc:  # the loader's error (it names the record) goes to the client
            log.error("stream %d failed: %s", stream.session, exc)
            self._send(stream.ident, protocol.encode("error", session=stream.session,
                                                     message=f"{type(exc).__name__}: {exc}"))
            self._stream = None
            return
        rows = len(next(iter(batch.values())))
        header = protocol.encode("batch", session=stream.session, epoch=pos["epoch"], batch=pos["next_batch"],
                                 rows=rows)
        frames = [batch[name] for name in self._fields]
        try:
            self.sock.send_multipart([stream.ident, header], zmq.SNDMORE)
            trackers = [self.sock.send(a, zmq.SNDMORE if i + 1 < len(frames) else 0, copy=False, track=True)
                        for i, a in enumerate(frames)]
        except zmq.ZMQError as exc:
            log.warning("stream %d: send failed (%s)", stream.session, exc)
            release()
            self._end_stream()
            return
        self._in_flight.append((zmq.MessageTracker(*trackers), release))
        stream.credits -= 1
        self.sent += 1

    def _wait_sent(self, keep: int) -> None:
        """Give slots back to the loader as ZeroMQ lets go of their frames, until at most ``keep`` are out."""
        while self._in_flight and (len(self._in_flight) > keep or self._in_flight[0][0].done):
            tracker, release = self._in_flight[0]
            while not tracker.done:
                try:
                    tracker.wait(POLL_MS / 1000)
                except zmq.NotDone:
                    continue
            self._in_flight.popleft()
            release()

    def _send(self, ident: bytes, frame: bytes) -> None:
        try:
            self.sock.send_multipart([ident, frame], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the peer is gone or full: it will ask again
            log.debug("could not answer %s: %s", ident.hex(), exc)

    # ----- shutdown -------------------------------------------------------------------------------
    def close(self) -> None:
        """Tell the client, stop the loader, close the socket (idempotent)."""
        sock = getattr(self, "sock", None)
        if sock is not None and not sock.closed:
            stream = getattr(self, "_stream", None)
            if stream is not None:
                self._send(stream.ident, protocol.encode("bye"))
                self._end_stream()
            if getattr(self, "_in_flight", None):
                self._wait_sent(0)
            sock.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self.loader.close()
        self._ctx.term()

    def __enter__(self) -> "FeedServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _authenticator(ctx: zmq.Context, clients_dir: str) -> Any:
    """ZAP handler admitting only the CURVE public keys found in ``clients_dir``."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=clients_dir)
    return auth
