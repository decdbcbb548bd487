"""The worker process loop: build a handler once, then run small tasks; exceptions travel as data.

Messages worker -> main are small tuples ``(kind, task_id, body)``:
``("ready", None, pid)``, ``("done", tid, result)``, ``("error", tid, ErrorInfo)``
and ``("init_error", None, ErrorInfo)``. Main -> worker sends ``(tid, payload)``
or ``None`` (stop). The worker exits by itself when the process that started the
pool (``owner_pid``) dies. That is not always its parent: under ``forkserver`` the
parent is the fork server, which outlives the owner as long as any other process
holds the server's "alive" pipe (a fork child of the owner does), so the parent pid
says nothing. The worker watches the owner through a pidfd (Linux >= 5.3, readable
once the process has exited) polled together with its pipe, else checks the pid
whenever it has been idle ``poll_s`` seconds and before every task; a closed pipe
ends it too. (``prctl(PR_SET_PDEATHSIG)`` is not used: it fires when the *thread*
that started the worker exits, which would kill the workers of a loader created in a
short-lived thread, and it watches the parent only.) With a pidfd, a daemon thread also
waits on it, so a worker stuck in a task still exits when its owner does. A worker that
leaves because its owner died removes the owner's /dev/shm files on its way out: a
SIGTERMed or SIGKILLed owner could not, and nothing else would until another loader
runs on the host.

Spawned workers (``spawn``, ``forkserver``) get the factory packed (see :mod:`.bootstrap`).
"""
from __future__ import annotations

import os
import select
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable, Optional, Tuple, Union

from ..errors import Spelled, WorkerError, literal
from ..loaders.strings import cut
from .bootstrap import HandlerFactory, PackedFactory
from .shm import pid_alive, sweep_stale

Handler = Callable[[Any], Any]
MESSAGE_CHARS = 400  # a worker's error message is cut to this (a record may echo a huge value)


@dataclass(frozen=True)
class ErrorInfo:
    """An exception as data: picklable whatever the exception type was.

    ``key`` is the record that raised (the exception's ``record_key``), sent with the error: by
    the time the main process reads it the worker may be on another record. ``message`` and
    ``fixes`` are :mod:`feedstock.errors` templates, so the front end spells the settings.
    """

    message: str
    traceback: str
    key: Optional[str] = None
    fixes: Tuple[str, ...] = ()

    @classmethod
    def of(cls, exc: BaseException) -> "ErrorInfo":
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        key = getattr(exc, "record_key", None)
        if isinstance(exc, Spelled):  # says what and what to do already
            message, fixes = exc.what, exc.fixes
        else:
            message = literal(cut(f"{type(exc).__name__}: {exc}", MESSAGE_CHARS))
            fixes = tuple(getattr(exc, "record_fixes", ()))
        return cls(message, text, None if key is None else str(key), fixes)

    def error(self, worker: str, pid: Optional[int], task: Callable[[], str]) -> WorkerError:
        """The WorkerError of this failure in ``worker`` (its ``pid``); ``task`` describes the task
        when no record was named."""
        if self.key is None:
            message = f"{worker}{'' if pid is None else f' (pid {pid})'} failed on {literal(task())}: {self.message}"
        else:
            message = f"{self.message} (in {worker}{'' if pid is None else f', pid {pid}'})"
        return WorkerError(message, key=self.key, worker_traceback=self.traceback, fixes=self.fixes)


def limit_threads() -> None:
    """One thread per worker for OpenCV, BLAS/OpenMP and torch (feedstock.threads owns the budget)."""
    from ..threads import limit_worker

    limit_worker()


class OwnerWatch:
    """Whether the pool's owner process has exited: a pidfd when the kernel has them, else its pid."""

    def __init__(self, pid: int):
        self.pid, self.parent = int(pid), os.getppid()
        self.fd: Optional[int] = None
        self._dead = False
        try:
            self.fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            self._dead = True
        except (AttributeError, OSError):  # no pidfd_open (old kernel or Python): pid checks
            pass

    def gone(self, wait: float = 0.0) -> bool:
        """Whether the owner has exited; ``wait``: seconds to wait for that (an exiting process
        closes its pipes before it counts as exited: EOF can come first)."""
        deadline = time.monotonic() + wait
        while not self._check() and time.monotonic() < deadline:
            if self.fd is not None:
                select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            else:
                time.sleep(0.01)
        return self._dead

    def _check(self) -> bool:
        if self._dead:
            return True
        if self.fd is not None:
            self._dead = bool(select.select([self.fd], [], [], 0)[0])
        elif self.pid == self.parent:
            self._dead = os.getppid() != self.parent  # re-parented: exact even after pid reuse
        else:
            self._dead = not pid_alive(self.pid)
        return self._dead

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def exit_with_owner(self) -> None:
        """A daemon thread ends this process (after removing the owner's files) once the owner has
        exited, also while a task is stuck (a hung read, a transform that never returns)."""
        if self.fd is None:
            return  # no pidfd: the checks between tasks are all there is
        fd = os.dup(self.fd)  # its own: close() may run before this thread wakes

        def watch() -> None:
            select.select([fd], [], [])  # readable once the owner has exited (a zombie too)
            sweep_stale(owner=self.pid)
            os._exit(0)

        threading.Thread(target=watch, name="feedstock-owner-watch", daemon=True).start()


def worker_main(wid: int, conn: Connection, factory: Union[HandlerFactory, PackedFactory], poll_s: float = 1.0,
                owner_pid: Optional[int] = None) -> None:
    """Entry point of a worker process (target of ``multiprocessing.Process``).

    ``owner_pid``: the process whose death ends this worker (default: the parent).
    """
    owner = OwnerWatch(os.getppid() if owner_pid is None else owner_pid)
    owner.exit_with_owner()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    # A forked worker inherits the owner's Python handlers: `feedstock serve` and a trainer catch
    # SIGTERM to stop cleanly, and with their handler terminate() ended no worker (the pool's close
    # then waited 3 s and killed it). A worker is ended by SIGTERM, as Process.terminate() means.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    limit_threads()
    cut_off = True  # left because the pipe broke (or the owner died), not because told to stop
    try:
        if owner.gone():
            return
        try:
            if isinstance(factory, PackedFactory):
                factory = factory.load()
            handler = factory(wid)
        except Exception as exc:  # reported to main, which raises it as WorkerError
            cut_off = not _send(conn, ("init_error", None, ErrorInfo.of(exc)))
            return
        if _send(conn, ("ready", None, os.getpid())):
            cut_off = _serve(conn, handler, owner, poll_s)
    finally:
        if owner.gone(wait=1.0 if cut_off else 0.0):  # SIGTERM/SIGKILL: the owner could not unlink its files
            sweep_stale(owner=owner.pid)
        owner.close()


def _serve(conn: Connection, handler: Handler, owner: OwnerWatch, poll_s: float) -> bool:
    """Run tasks until told to stop (False) or cut off from the owner (True)."""
    poller = select.poll()
    for fd in (conn.fileno(), owner.fd):
        if fd is not None:
            poller.register(fd, select.POLLIN)
    while True:
        events = poller.poll(poll_s * 1000.0)
        if owner.gone():
            return True
        if not events:
            continue
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return True
        if msg is None:
            return False
        tid, payload = msg
        try:
            reply = ("done", tid, handler(payload))
        except Exception as exc:  # travels as data; the worker keeps serving
            reply = ("error", tid, ErrorInfo.of(exc))
        if not _send(conn, reply):
            return True


def _send(conn: Connection, message: object) -> bool:
    try:
        conn.send(message)
        return True
    except (OSError, EOFError):  # the other end (main process or worker) is gone
        return False
