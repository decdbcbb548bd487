"""A supervised process pool: a picklable handler over small tasks, with death, hang and error handling.

API (reused by the Loader and by the ``build-lmdb`` tool)::

    pool = ProcessPool(factory, workers=4, start_method="auto", timeout=60.0,
                       replace_dead=True, max_restarts=16, describe=None, name="feedstock")
    with pool:                                 # start(); close() on exit, also on errors
        tid = pool.submit(payload)             # to the least-loaded worker; returns a task id
        for tid, result in pool.results(timeout=1.0):   # >= 1 result unless the timeout passed
            ...
        pool.drain(timeout=5.0)                # wait out (and discard) what is still running

``factory(worker_id)`` runs once in each worker and returns the handler;
``handler(payload)`` runs per task; payloads and results are small and picklable
(arrays belong in shared memory). Supervision runs in the caller's thread while it
waits in ``results()``: handler errors come back as ``WorkerError`` with the
worker's traceback; a dead worker is replaced and its tasks re-sent (or
``WorkerDied``); a task over ``timeout`` is ``WorkerTimeout``; ``close()`` leaves
no process behind. Start method "auto": ``fork`` when the caller runs one Python
thread, else ``spawn``. docs/pipeline.md ("The process pool") has the details and
bench/README.md the start-method timings.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Callable, Deque, Dict, List, Optional, Tuple, Union

from ..errors import WorkerDied, WorkerError, WorkerTimeout
from ..threads import fork_shared
from .bootstrap import HandlerFactory, PackedFactory, not_started, refuse_in_bootstrap, start_hint
from .shm import unlink_blob
from .worker import ErrorInfo, _send, worker_main  # _send: a closed pipe is False, not an error

log = logging.getLogger(__name__)

Describe = Callable[[int, object], str]
START_S = 60.0  # seconds a worker may take to become ready, whatever the task timeout


def choose_start_method(requested: str = "auto") -> str:
    """Resolve "auto" (fork when single-threaded, else spawn); validate an explicit method."""
    available = multiprocessing.get_all_start_methods()
    if requested != "auto":
        if requested not in available:
            raise ValueError(f"start_method={requested!r} must be 'auto' or one of {available}")
        return requested
    # Python threads only: numpy's OpenBLAS (and torch's OpenMP) keep idle native pools
    # with fork handlers, which is why /proc/self/task is >1 in nearly every process.
    threads = threading.active_count()
    return "fork" if threads == 1 and "fork" in available else "spawn"


def _default_describe(wid: int, payload: object) -> str:
    text = repr(payload)
    return f"task {text if len(text) <= 200 else text[:197] + '...'}"


@dataclass(eq=False)
class _Task:
    tid: int
    payload: object  # passed to the worker's handler as is
    submitted: float
    deaths: int = 0


@dataclass(eq=False)
class _Seat:
    wid: int
    process: BaseProcess
    conn: Connection
    started: float
    tasks: Deque[_Task] = field(default_factory=deque)
    last_event: float = 0.0
    ready: bool = False  # its factory returned: from now on a death is a crash, not a failed start

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid


class ProcessPool:
    """Worker processes running ``factory(worker_id)(payload)``; see the module docstring."""

    def __init__(
        self,
        factory: HandlerFactory,
        *,
        workers: int,
        start_method: str = "auto",
        timeout: Optional[float] = None,
        replace_dead: bool = True,
        max_restarts: int = 16,
        describe: Optional[Describe] = None,
        name: str = "feedstock",
    ):
        if workers < 1:
            raise ValueError(f"{workers=} must be >= 1 (use in-process code for 0)")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"{timeout=} must be positive seconds or None")
        if max_restarts < 0:
            raise ValueError(f"{max_restarts=} must be >= 0")
        self.factory, self.workers = factory, int(workers)
        self.start_method = choose_start_method(start_method)
        self.timeout, self.replace_dead, self.max_restarts = timeout, replace_dead, max_restarts
        self.describe: Describe = describe or _default_describe
        self.name = name
        self.restarts = 0
        self._seats: List[_Seat] = []
        self._next_tid = 0
        self._closed = False
        self._poll_key: Tuple[int, ...] = ()
        self._poll: Tuple[Optional[select.poll], Dict[int, Tuple[_Seat, bool]]] = (None, {})
        self._failed: Deque[WorkerError] = deque()  # task errors not raised yet (results came first)
        self._packed: Optional[PackedFactory] = None  # the factory as spawned workers get it

    # ----- lifecycle -------------------------------------------------------------------------
    def start(self) -> "ProcessPool":
        if self._closed:
            raise RuntimeError("pool is closed")
        refuse_in_bootstrap()
        while len(self._seats) < self.workers:  # one by one: close() reaches those started if one fails
            self._seats.append(self._spawn(len(self._seats)))
        return self

    def _spawn(self, wid: int) -> _Seat:
        ctx = multiprocessing.get_context(self.start_method)
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        process = ctx.Process(  # type: ignore[attr-defined]  # every concrete context has Process
            target=worker_main,
            args=(wid, child_conn, self._factory_for_worker()),
            kwargs={"owner_pid": os.getpid()},  # under forkserver the parent is the server, not us
            name=f"{self.name}-worker-{wid}",
            daemon=True,  # multiprocessing's own exit hook terminates daemons: a last safety net
        )
        try:
            with fork_shared() if self.start_method == "fork" else contextlib.nullcontext():
                process.start()
        except OSError as exc:  # e.g. a broken start-up pipe: the new process died at once
            parent_conn.close()
            raise WorkerDied(f"worker {wid} could not be started ({exc}). {start_hint(self.start_method)}") from exc
        finally:
            child_conn.close()  # so the worker's death reads as EOF here
        now = time.monotonic()
        return _Seat(wid, process, parent_conn, now, last_event=now)

    def _factory_for_worker(self) -> Union[HandlerFactory, PackedFactory, None]:
        """The factory itself for fork; else pickled once (in a file when large)."""
        if self.start_method != "fork" and self._packed is None:
            self._packed = PackedFactory.of(self.factory)
        return self.factory if self.start_method == "fork" else self._packed

    def close(self) -> None:
        """Stop every worker (terminate busy ones) and reap them; idempotent."""
        self._closed = True
        if self._packed is not None and self._packed.blob:
            unlink_blob(self._packed.blob)  # workers that still start fail on init, named
        seats, self._seats = self._seats, []
        for seat in seats:
            if seat.tasks or not _send(seat.conn, None):
                _terminate(seat.process)
        deadline = time.monotonic() + 2.0
        for seat in seats:
            seat.process.join(max(0.0, deadline - time.monotonic()))
            if seat.process.exitcode is None:
                _terminate(seat.process)
                seat.process.join(1.0)
            if seat.process.exitcode is None:
                seat.process.kill()
                seat.process.join()
            seat.conn.close()
            seat.process.close()

    def __enter__(self) -> "ProcessPool":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> List[int]:
        return [seat.pid for seat in self._seats if seat.pid is not None]

    @property
    def outstanding(self) -> int:
        return sum(len(seat.tasks) for seat in self._seats)

    # ----- tasks -----------------------------------------------------------------------------
    def submit(self, payload: object, *, worker: Optional[int] = None) -> int:
        """Queue ``payload`` on ``worker`` (default: the one with the fewest unfinished tasks)."""
        self.start()
        seat = self._seats[worker] if worker is not None else min(self._seats, key=lambda s: len(s.tasks))
        task = _Task(self._next_tid, payload, time.monotonic())
        self._next_tid += 1
        seat.tasks.append(task)
        _send(seat.conn, (task.tid, payload))  # a dead worker is seen via its sentinel; then re-sent
        return task.tid

    def results(self, timeout: Optional[float] = None) -> List[Tuple[int, object]]:
        """Wait for finished tasks; ``[]`` only when ``timeout`` passed first. Raises worker failures."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out: List[Tuple[int, object]] = []
        while not out:
            if self._failed:
                raise self._failed.popleft()
            now = time.monotonic()
            wake = self._check_timeouts(now)
            if deadline is not None:
                if now >= deadline:
                    break
                wake = deadline if wake is None else min(wake, deadline)
            if not any(seat.tasks for seat in self._seats):
                if deadline is None:
                    raise RuntimeError("results() called with no task outstanding")
            poller, handles = self._poller()
            assert poller is not None, "results() on a pool never started"  # None only before start()
            for fd, _event in poller.poll(None if wake is None else max(0.0, wake - now) * 1000.0):
                seat, is_conn = handles[fd]
                if not any(s is seat for s in self._seats):
                    continue  # replaced while handling an earlier handle of this round
                if is_conn:
                    self._on_message(seat, out)
                else:
                    self._on_death(seat, out)
        return out

    def drain(self, timeout: float) -> bool:
        """Wait for every outstanding task and discard the results; False when that timed out."""
        deadline = time.monotonic() + timeout
        while self.outstanding:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self.results(remaining)
            except (WorkerTimeout, WorkerDied):
                return False
            except WorkerError:
                continue  # a failed task is finished too
        self._failed.clear()  # failures that came with the last results are discarded with them
        return True

    # ----- supervision -----------------------------------------------------------------------
    def _poller(self) -> Tuple[Optional[select.poll], Dict[int, Tuple[_Seat, bool]]]:
        """One poll object over every pipe and process sentinel, rebuilt only when seats change
        (``multiprocessing.connection.wait`` builds a selector per call: ~30 us per batch)."""
        key = tuple(id(seat) for seat in self._seats)
        if self._poll_key != key:
            poller, handles = select.poll(), {}
            for seat in self._seats:
                for fd, is_conn in ((seat.conn.fileno(), True), (seat.process.sentinel, False)):
                    poller.register(fd, select.POLLIN)
                    handles[fd] = (seat, is_conn)
            self._poll_key, self._poll = key, (poller, handles)
        return self._poll

    def _on_message(self, seat: _Seat, out: List[Tuple[int, object]]) -> None:
        while True:
            try:
                if not seat.conn.poll():
                    return
                kind, tid, body = seat.conn.recv()
            except (EOFError, OSError):
                return  # the sentinel reports the death
            seat.last_event = time.monotonic()
            if kind == "ready":
                seat.ready = True
            elif kind == "done":
                seat.tasks.popleft()  # a worker finishes its tasks in the order it got them
                out.append((tid, body))
            elif kind == "error":  # raised once the results read with it are returned
                self._failed.append(self._task_error(seat, seat.tasks.popleft(), body))
            elif kind == "init_error":
                raise WorkerError(
                    f"worker {seat.wid} (pid {seat.pid}) failed to start: {body.message}",
                    key=body.key, worker_traceback=body.traceback,
                )

    def _task_error(self, seat: _Seat, task: _Task, info: ErrorInfo) -> WorkerError:
        error = info.error(f"worker {seat.wid}", seat.pid, lambda: self.describe(seat.wid, task.payload))
        error.task_id = task.tid  # type: ignore[attr-defined]
        return error

    def _on_death(self, seat: _Seat, out: List[Tuple[int, object]]) -> None:
        self._on_message(seat, out)  # results it sent before dying still count
        seat.process.join(0.1)
        code = seat.process.exitcode
        if not seat.ready and code is not None and code >= 0:
            raise WorkerDied(not_started(f"worker {seat.wid} (pid {seat.pid}) exited ({code}) before it started",
                                         code, self.start_method))
        how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited ({code})"
        doing = f" while running {self.describe(seat.wid, seat.tasks[0].payload)}" if seat.tasks else ""
        message = f"worker {seat.wid} (pid {seat.pid}) {how}{doing}"
        if seat.tasks:
            seat.tasks[0].deaths += 1
        if not self.replace_dead or self.restarts >= self.max_restarts:
            raise WorkerDied(message + f" (replace_dead={self.replace_dead}, {self.restarts} restarts so far)")
        if seat.tasks and seat.tasks[0].deaths >= 2:
            raise WorkerDied(message + "; this task has now killed two workers")
        log.warning("%s; starting a replacement and re-sending %d task(s)", message, len(seat.tasks))
        self._replace(seat)

    def _replace(self, seat: _Seat) -> None:
        seat.conn.close()
        seat.process.close()
        fresh = self._spawn(seat.wid)
        fresh.tasks = seat.tasks
        self._seats[self._seats.index(seat)] = fresh
        self.restarts += 1
        for task in fresh.tasks:
            _send(fresh.conn, (task.tid, task.payload))

    def _check_timeouts(self, now: float) -> Optional[float]:
        """Raise WorkerTimeout for an overdue task; else return the next deadline (or None).

        A task's time counts from when its worker could start it (ready, or done with the task
        before): starting a worker is not the task's time. A worker that is still starting gets
        ``START_S`` at least: on a busy machine a spawned worker's imports take seconds, which is
        slow, not hung, and is reported as slow with the time waited."""
        if self.timeout is None:
            return None
        wake = None
        for seat in self._seats:
            if not seat.tasks:
                continue
            if not seat.ready:
                due = seat.started + max(self.timeout, START_S)
                if now >= due:
                    raise WorkerTimeout(
                        f"worker {seat.wid} (pid {seat.pid}) is slow to start: not ready after {now - seat.started:.1f} s "
                        f"(start_method={self.start_method!r}; the machine may be busy, or what the worker imports "
                        "slow to load): use fewer workers, or a larger timeout")
            else:
                due = max(seat.tasks[0].submitted, seat.last_event) + self.timeout
                if now >= due:
                    what = self.describe(seat.wid, seat.tasks[0].payload)
                    raise WorkerTimeout(f"worker {seat.wid} (pid {seat.pid}) did not finish within "
                                        f"timeout={self.timeout} s: {what}")
            wake = due if wake is None else min(wake, due)
        return wake


def _terminate(process: BaseProcess) -> None:
    if process.exitcode is None:
        process.terminate()
