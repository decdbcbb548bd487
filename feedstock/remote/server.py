"""FeedServer: runs a Loader on a CPU host and streams its batches to one client at a time over ZeroMQ.

One feed per server: while a client is attached, another client's ``hello`` or
``start`` is refused with an error naming the attached client (a client that has
gone, which ZeroMQ no longer routes to, is dropped first). Every control message
is validated (:mod:`.messages`); a bad one gets an ``error`` reply and a log line,
and the server goes on serving.

The server is single-threaded Python (so its loader's workers can fork): it
polls its ROUTER socket for control messages between batches and sends a batch
whenever the client holds a credit. Batches go out without copying: each frame
is the loader's shared-memory slot itself, leased from the loader until ZeroMQ
is done with the frames (up to half the loader's slots are in flight at once,
the others are being filled).
Peers that vanish are noticed by ZeroMQ's own heartbeats (ZMTP PING/PONG, run by
its I/O thread even while this thread waits on a slow batch): their queued
messages are dropped and the feed simply waits for the next ``start``.
"""
from __future__ import annotations

import collections
import errno
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Mapping, Optional, Tuple

import zmq

from ..errors import RemoteSetupError, summary
from ..loaders.strings import cut
from . import protocol
from .fingerprint import checked, loader_fingerprint
from .messages import MAX_CREDITS, MAX_FRAME_BYTES, BadRequest, parse_request, show
from .protocol import tune
from .security import check_bind, server_curve
from .served import leased

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

    from ..pipeline.loader import Leases, Loader

log = logging.getLogger(__name__)

POLL_MS = 200  # how often an idle server looks at its stop flag
LOGGED_BAD = 20  # bad messages logged one by one; after that every 1000th


class _Feed:
    """The one client being served: its identity and name, session id and unused credits."""

    def __init__(self, ident: bytes, client: str, session: int, credits: int, it: Leases):
        self.ident, self.client, self.session, self.credits = ident, client, session, credits
        self.it = it  # the loader's leased pass, a generator: close() abandons it
        self.address = "?"
        self.since = time.strftime("%H:%M:%S")


class FeedServer:
    """Serve ``loader``'s batches at ``bind``; ``run()`` until ``stop()`` (or Ctrl-C), then ``close()``."""

    def __init__(self, loader: Loader, *, bind: str = "tcp://127.0.0.1:5555", curve_secret: Optional[str] = None,
                 curve_clients: Optional[str] = None, insecure: bool = False, heartbeat: float = 1.0,
                 fingerprint: Optional[Mapping[str, object]] = None):
        """``fingerprint``: what identifies the stream for the clients' setup check (source, transform
        and sampler settings, e.g. ``Stream.fingerprint()``); default: derived from ``loader``."""
        if not heartbeat > 0:
            raise ValueError(f"{heartbeat=} must be positive (seconds)")
        if curve_clients and not curve_secret:
            raise ValueError("curve_clients (allowed client keys) needs curve_secret (the server's key)")
        check_bind(bind, curve=bool(curve_secret), insecure=insecure)
        self.loader = loader
        self.meta = protocol.make_meta(loader, checked(loader_fingerprint(loader) if fingerprint is None
                                                       else fingerprint))
        self._fields = [name for name, _, _ in protocol.fields_of(self.meta)]  # frame order of every batch
        loader.start()  # fork the workers now, before ZeroMQ and the authenticator start threads
        self._ctx = zmq.Context()
        self._auth = None
        self.sock = self._ctx.socket(zmq.ROUTER)
        try:
            tune(self.sock, heartbeat)
            self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a client that is gone fails, not vanishes
            self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)  # a peer sending more is dropped unread
            self.sock.sndtimeo = 1000  # a client that stops reading cannot block the server (ms)
            if curve_secret:
                server_curve(self.sock, curve_secret)
                if curve_clients:
                    self._auth = _authenticator(self._ctx, curve_clients)
            _bind(self.sock, bind)
        except BaseException:
            self.close()
            raise
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._feed: Optional[_Feed] = None
        # batches ZeroMQ may still be reading: (tracker, release of the loader slot)
        self._in_flight: Deque[Tuple[zmq.MessageTracker, Callable[[], None]]] = collections.deque()
        slots = loader.prefetch if loader.workers > 0 else 1
        self._max_in_flight = max(0, min(slots - 1, slots // 2))  # 0: wait for each send before the next
        self._stop = threading.Event()
        self.sent = 0
        self.bad_messages = 0

    def stop(self) -> None:
        """Ask ``run()`` to return (thread- and signal-safe)."""
        self._stop.set()

    def run(self, *, idle_exit: Optional[float] = None) -> None:
        """Serve until ``stop()``; ``idle_exit``: also return after that many seconds with no client."""
        log.info("serving %s at %s", self.loader.source, self.endpoint)
        last_active = time.monotonic()
        while not self._stop.is_set():
            busy = self._feed is not None and self._feed.credits > 0
            if self.sock.poll(0 if busy else POLL_MS, zmq.POLLIN):
                self._drain()
            if self._feed is not None:
                last_active = time.monotonic()
                if self._feed.credits > 0 and not self._stop.is_set():  # no new epoch (new workers) once stopping
                    self._send_next()
            elif idle_exit is not None and time.monotonic() - last_active > idle_exit:
                return

    # ----- control messages ---------------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            ident = frames[0].bytes
            try:
                if len(frames) != 2:
                    raise BadRequest(f"a control message is one frame, got {len(frames) - 1}")
                self._handle(ident, frames[1], parse_request(frames[1].bytes))
            except BadRequest as exc:
                self._refuse(ident, exc)
            except Exception as exc:  # a bug here must not end the service of the other clients
                log.exception("failed to handle a control message of client %s", ident.hex())
                self._refuse(ident, BadRequest(f"the server failed on this request: {type(exc).__name__}: "
                                               f"{show(str(exc))}"))

    def _refuse(self, ident: bytes, exc: BadRequest) -> None:
        """Log the refusal (rate-limited: anyone may send these) and tell the sender."""
        self.bad_messages += 1
        if self.bad_messages <= LOGGED_BAD or self.bad_messages % 1000 == 0:
            log.warning("refused a control message of client %s (%d so far): %s", ident.hex(), self.bad_messages,
                        exc)
        self._send(ident, protocol.encode("error", session=exc.session, message=f"refused: {exc}", kind=exc.kind))

    def _handle(self, ident: bytes, frame: zmq.Frame, msg: Dict[str, Any]) -> None:
        op, feed = msg["op"], self._feed
        if op == "hello":
            self._check_free(ident, msg["client"], -1)
            self._send(ident, protocol.encode("meta", **self.meta))
        elif op == "start":
            self._start(ident, frame, msg)
        elif op == "credit":
            if feed is not None and feed.session == msg["session"] and feed.ident == ident:
                if feed.credits + msg["n"] > MAX_CREDITS:
                    raise BadRequest(f"credit: n={msg['n']} would give the feed {feed.credits + msg['n']} "
                                     f"credits, more than {MAX_CREDITS}", session=msg["session"])
                feed.credits += msg["n"]
        elif feed is not None and feed.ident == ident:  # stop
            self._end_feed()

    def _check_free(self, ident: bytes, client: str, session: int) -> None:
        """BadRequest (kind "busy") while another client that is still connected holds the feed."""
        feed = self._feed
        if feed is None or feed.ident == ident or feed.client == client:
            return  # free, or the attached client itself (reconnected: a new identity, the same name)
        if not self._reachable(feed.ident):
            log.info("session %d: client %s is gone; %s takes the server", feed.session, feed.client, client)
            self._end_feed()
            return
        raise BadRequest(
            f"this server already streams to client {feed.client!r} at {feed.address} (since {feed.since}); "
            f"one client per server: close that RemoteLoader first, or start another `feedstock serve` for "
            f"client {client!r}", session=session, kind="busy")

    def _reachable(self, ident: bytes) -> bool:
        try:
            self.sock.send_multipart([ident, protocol.encode("ping")], zmq.NOBLOCK)
        except zmq.Again:
            return True  # connected, its queue full
        except zmq.ZMQError:
            return False  # EHOSTUNREACH (ROUTER_MANDATORY): ZeroMQ dropped the connection
        return True

    def _start(self, ident: bytes, frame: zmq.Frame, msg: Dict[str, Any]) -> None:
        session = msg["session"]
        if msg["batch"] >= max(1, len(self.loader)):
            raise BadRequest(f"start: batch={msg['batch']} is not a batch of this server's part (it has "
                             f"{len(self.loader)} per epoch)", session=session)
        self._check_free(ident, msg["client"], session)
        self._end_feed()
        self._wait_sent(0)  # a repositioned loader may refill any slot, also those still being sent
        if self._in_flight:
            return  # stopped while a client would not take its batches: shutting down
        state = dict(self.loader.state_dict(), seed=msg["seed"], epoch=msg["epoch"], next_batch=msg["batch"])
        self.loader.load_state_dict(state)
        self._feed = _Feed(ident, msg["client"], session, msg["credits"], leased(self.loader))
        self._feed.address = _peer_address(frame)
        log.info("session %d: epoch %d batch %d for client %r at %s", session, msg["epoch"], msg["batch"],
                 msg["client"], self._feed.address)

    def _end_feed(self) -> None:
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.it.close()  # abandoned pass: work in flight stays for a pass that continues there

    # ----- batches --------------------------------------------------------------------------------
    def _send_next(self) -> None:
        feed = self._feed
        assert feed is not None
        self._wait_sent(self._max_in_flight)
        if len(self._in_flight) > self._max_in_flight:
            return  # stopped while the client would not take its batches
        try:
            pos = self.loader.state_dict()
            try:
                batch, release = next(feed.it)
            except StopIteration:  # an epoch ended: the feed goes on with the next
                feed.it = leased(self.loader)
                pos = self.loader.state_dict()
                batch, release = next(feed.it)
        except Exception as exc:  # the loader's error (it names the record) goes to the client
            log.error("session %d failed: %s", feed.session, exc)
            self._send(feed.ident, protocol.encode("error", session=feed.session,
                                                     message=cut(f"{type(exc).__name__}: {summary(exc)}", 1000),
                                                     kind="loader"))
            self._feed = None
            return
        rows = len(next(iter(batch.values())))
        header = protocol.encode("batch", session=feed.session, epoch=pos["epoch"], batch=pos["next_batch"],
                                 rows=rows)
        frames = [batch[name] for name in self._fields]
        try:
            self.sock.send_multipart([feed.ident, header], zmq.SNDMORE)
            # an ndarray is a buffer; pyzmq's stubs ask for collections.abc.Buffer, which numpy's do not declare
            trackers = [self.sock.send(a, zmq.SNDMORE if i + 1 < len(frames) else 0,  # type: ignore[call-overload]
                                       copy=False, track=True)
                        for i, a in enumerate(frames)]
        except zmq.ZMQError as exc:
            log.warning("session %d: send failed (%s)", feed.session, exc)
            release()
            self._end_feed()
            return
        self._in_flight.append((zmq.MessageTracker(*trackers), release))
        feed.credits -= 1
        self.sent += 1

    def _wait_sent(self, keep: int, *, stoppable: bool = True) -> None:
        """Give slots back to the loader as ZeroMQ lets go of their frames, until at most ``keep`` are out
        (or ``stop()`` was called: a client that stops reading must not keep the server from stopping)."""
        while self._in_flight and (len(self._in_flight) > keep or self._in_flight[0][0].done):
            tracker, release = self._in_flight[0]
            while not tracker.done:
                if stoppable and self._stop.is_set():
                    return  # close() drops what ZeroMQ still holds, then gives the slots back
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
            feed = getattr(self, "_feed", None)
            if feed is not None:
                self._send(feed.ident, protocol.encode("bye"))
                self._end_feed()
            sock.close(linger=0)  # drops the frames ZeroMQ still holds: their trackers complete
            if getattr(self, "_in_flight", None):
                self._wait_sent(0, stoppable=False)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self.loader.close()
        self._ctx.term()

    def __enter__(self) -> "FeedServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _peer_address(frame: zmq.Frame) -> str:
    try:
        return str(frame.get("Peer-Address") or "?")
    except zmq.ZMQError:  # ipc/inproc peers have none
        return "?"


def _bind(sock: zmq.Socket, endpoint: str) -> None:
    """``sock.bind(endpoint)``; RemoteSetupError in one line, naming the endpoint and what to do."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EADDRINUSE:
            why = ("the address is already in use (another `feedstock serve` or program listens there): stop "
                   "it, or bind another port (--bind tcp://HOST:PORT; port * picks a free one)")
        elif exc.errno in (zmq.EADDRNOTAVAIL, errno.ENODEV):
            why = "no network interface of this host has that address: bind one of its own addresses, or tcp://*:PORT"
        else:
            why = f"{exc.strerror}: expected tcp://HOST:PORT (or ipc://PATH) that this host can listen on"
        raise RemoteSetupError(f"cannot bind {show(endpoint)[1:-1]}: {why}") from None


def _authenticator(ctx: zmq.Context, clients_dir: str) -> ThreadAuthenticator:
    """ZAP handler admitting only the CURVE public keys found in ``clients_dir``."""
    from zmq.auth.thread import ThreadAuthenticator  # pyzmq's auth thread, only for CURVE servers

    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=clients_dir)
    return auth
