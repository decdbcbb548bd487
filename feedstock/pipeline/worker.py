"""The worker process loop: build a handler once, then run small tasks; exceptions travel as data.

Messages worker -> main are small tuples ``(kind, task_id, body)``:
``("ready", None, pid)``, ``("done", tid, result)``, ``("error", tid, ErrorInfo)``
and ``("init_error", None, ErrorInfo)``. Main -> worker sends ``(tid, payload)``
or ``None`` (stop). The worker exits by itself when its parent dies: it checks
``os.getppid()`` before every task and whenever it has been idle ``poll_s``
seconds, and a closed pipe ends it too. (``prctl(PR_SET_PDEATHSIG)`` is not
used: it fires when the *thread* that started the worker exits, which would kill
the workers of a loader created in a short-lived thread.)
"""
from __future__ import annotations

import os
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional

# Libraries that size a thread pool at load time read these; workers are already
# the parallelism, so nested pools would only oversubscribe the cores.
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OPENCV_FOR_THREADS_NUM",
)

Handler = Callable[[Any], Any]
HandlerFactory = Callable[[int], Handler]


@dataclass(frozen=True)
class ErrorInfo:
    """An exception as data: picklable whatever the exception type was."""

    message: str
    traceback: str
    key: Optional[str] = None

    @classmethod
    def of(cls, exc: BaseException) -> "ErrorInfo":
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        key = getattr(exc, "record_key", None)
        return cls(f"{type(exc).__name__}: {exc}", text, None if key is None else str(key))


def limit_threads() -> None:
    """One thread per worker for OpenCV, BLAS/OpenMP and torch (where loaded)."""
    for name in THREAD_ENV:
        os.environ[name] = "1"
    # Already-loaded libraries no longer read the environment: tell them directly.
    # OpenCV not yet loaded reads OPENCV_FOR_THREADS_NUM when it is (checked: 5.0).
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(1)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def worker_main(wid: int, conn, factory: HandlerFactory, poll_s: float = 1.0) -> None:
    """Entry point of a worker process (target of ``multiprocessing.Process``)."""
    # The parent is the main process (fork, spawn) or the forkserver, which exits with
    # the main process; either way an orphaned worker sees its parent pid change.
    parent_pid = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    limit_threads()
    try:
        handler = factory(wid)
    except Exception as exc:  # reported to main, which raises it as WorkerError
        _send(conn, ("init_error", None, ErrorInfo.of(exc)))
        return
    if not _send(conn, ("ready", None, os.getpid())):
        return
    _serve(conn, handler, parent_pid, poll_s)


def _serve(conn, handler: Handler, parent_pid: int, poll_s: float) -> None:
    while True:
        try:
            if not conn.poll(poll_s):
                if os.getppid() != parent_pid:
                    return
                continue
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None or os.getppid() != parent_pid:
            return
        tid, payload = msg
        try:
            reply = ("done", tid, handler(payload))
        except Exception as exc:  # travels as data; the worker keeps serving
            reply = ("error", tid, ErrorInfo.of(exc))
        if not _send(conn, reply):
            return


def _send(conn, message) -> bool:
    try:
        conn.send(message)
        return True
    except (OSError, EOFError):  # the main process is gone
        return False
