"""The thread budget: loader workers run single-threaded, the trainer gets the cores they leave.

numpy's BLAS (OpenBLAS) and OpenMP size their thread pools to every core of the
machine. A trainer doing its matrix products with one thread per core while the
loader's workers decode on the same cores makes both wait on each other (on 2
cores, LeNet's 100 iterations took 13-19 s by default, 3-4 s with one BLAS
thread). So:

* every worker process limits OpenCV, BLAS, OpenMP and torch to one thread
  (:func:`limit_worker`: the environment variables for libraries not loaded yet,
  the libraries' own controls for those already loaded) and runs under SCHED_BATCH
  (:func:`batch_scheduling`: a woken worker does not preempt the trainer);
* the consumer (the trainer, a benchmark's consumer loop) runs its BLAS with
  :func:`consumer_threads` threads, the cores the workers leave (at least one),
  for the time of a :func:`budget` block, through threadpoolctl where it is
  installed (a dependency of feedstock);
* :class:`Split` says what was set, for the trainer's report and ``bench``.

BLAS sums in an order that depends on its thread count, so the same training with
different worker counts (hence trainer threads) can differ in the last bits of the
weights; ``FEEDSTOCK_TRAINER_THREADS`` fixes the count where bit-identical runs
across worker counts matter.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, List, Optional

if TYPE_CHECKING:
    from threadpoolctl import threadpool_limits

# Libraries that size a thread pool at load time read these.
WORKER_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OPENCV_FOR_THREADS_NUM",
)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def consumer_threads(workers: int, cores: Optional[int] = None) -> int:
    """BLAS threads for the consumer of a Loader with ``workers`` single-threaded worker processes:
    the cores they leave, at least one (``workers=0``: every core, the consumer reads in-process)."""
    cores = usable_cores() if cores is None else max(1, int(cores))
    return max(1, cores - max(0, int(workers)))


def limit_worker() -> None:
    """One thread per worker for OpenCV, BLAS/OpenMP and torch (where loaded): workers are the parallelism."""
    for name in WORKER_ENV:
        os.environ[name] = "1"
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(1)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    if "numpy" in sys.modules:  # BLAS already loaded: the environment is read no more
        _lower_blas(1)
    batch_scheduling()


@contextlib.contextmanager
def fork_shared() -> Iterator[None]:
    """Around a fork of a worker: what the worker would otherwise copy page by page stays shared, and
    nothing the parent's threads hold is copied into it held.

    * threadpoolctl is imported here, once, so :func:`limit_worker` finds the module already in
      the forked worker instead of importing it there (about 3 MB of private pages per worker),
      and the parent's BLAS runs one thread for the fork (restored after it);
    * the parent's objects move to gc's permanent generation for the fork (``gc.freeze``): a
      collection in the worker then never writes into their headers. Without it one full
      collection in a worker made about 40 MB of the parent's heap private to it (copy on
      write), in a process holding little of its own. The parent's objects become collectable
      again as soon as the fork is done; a caller that froze objects itself keeps its freeze;
    * OpenCV's thread pool is shut down for the fork and restored after it: a child forked while
      the pool had threads (any parallel OpenCV call in the parent, such as a large resize) hung
      in its first OpenCV call, ``cv2.setNumThreads(1)`` included, in 13 of 20 tries here.
      Setting one thread joins the pool's threads (the pthreads backend of OpenCV's wheels).
    """
    import gc

    cv2 = sys.modules.get("cv2")
    cv_threads = cv2.getNumThreads() if cv2 is not None else 1
    frozen = gc.get_freeze_count() == 0
    # One BLAS thread for the fork: the worker inherits that count and has nothing to set (setting it
    # there made OpenBLAS start its pool again: ~50 ms of spinning CPU per worker)
    blas = _set_blas(1, user_api="blas")
    if frozen:
        gc.freeze()
    if cv2 is not None and cv_threads > 1:
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        if cv2 is not None and cv_threads > 1:
            cv2.setNumThreads(cv_threads)
        if frozen:
            gc.unfreeze()
        if blas is not None:
            blas.restore_original_limits()


def batch_scheduling() -> bool:
    """Run this process under Linux's SCHED_BATCH (same CPU share, no privilege needed); False where
    there is none. A woken SCHED_BATCH task does not preempt the running one: without it, each task
    the trainer sends woke a worker that took the trainer's core for the whole task (a 1-2 ms MNIST
    batch) inside the trainer's send, which the trainer counted as data wait (about 3%).
    $FEEDSTOCK_WORKER_SCHED=normal keeps the default policy."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None or os.environ.get("FEEDSTOCK_WORKER_SCHED", "batch").lower() == "normal":
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:  # a sandbox that refuses it: the default policy stays
        return False
    return True


def _set_blas(threads: int, user_api: Optional[str] = None) -> Optional[threadpool_limits]:
    """threadpoolctl's limiter after setting BLAS and OpenMP pools (or ``user_api``'s) to ``threads``;
    None without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=threads, user_api=user_api)


def _lower_blas(threads: int) -> None:
    """BLAS/OpenMP pools above ``threads`` set to it. A pool already there is left alone: after a fork,
    any call that sets OpenBLAS's count starts its pool again with the count it was loaded with, and
    those threads spun for about 50 ms of CPU per worker (a forked worker inherits one thread from
    :func:`fork_shared`, so nothing is called)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return
    for lib in ThreadpoolController().lib_controllers:
        if lib.num_threads > threads:
            lib.set_num_threads(threads)


def blas_pools() -> List[str]:
    """The BLAS/OpenMP pools loaded in this process and their thread counts ("openblas 2", ...)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [f"{p.get('internal_api', p.get('user_api'))} {p.get('num_threads')}" for p in threadpool_info()]


@dataclass
class Split:
    """How the cores were shared: ``workers`` single-threaded workers, the consumer's BLAS threads."""

    cores: int
    workers: int
    consumer: int
    pools: List[str] = field(default_factory=list)
    controlled: bool = True  # False: threadpoolctl missing, BLAS keeps its own count

    def line(self) -> str:
        pools = ", ".join(self.pools) if self.pools else "no BLAS pool found"
        how = "" if self.controlled else " (not set: threadpoolctl is not installed)"
        return (f"threads: {self.cores} cores = trainer {self.consumer} BLAS thread(s){how} + "
                f"{self.workers} worker(s) x 1 thread [{pools}]")


@contextlib.contextmanager
def budget(workers: int, cores: Optional[int] = None) -> Iterator[Split]:
    """Within the block this process's BLAS/OpenMP pools use :func:`consumer_threads` threads;
    restored afterwards. ``$FEEDSTOCK_TRAINER_THREADS`` overrides the count."""
    cores = usable_cores() if cores is None else int(cores)
    wanted = os.environ.get("FEEDSTOCK_TRAINER_THREADS")
    if wanted is not None and not (wanted.isdigit() and int(wanted) > 0):
        raise ValueError(f"FEEDSTOCK_TRAINER_THREADS={wanted!r} must be a positive integer")
    threads = int(wanted) if wanted else consumer_threads(workers, cores)
    limiter = _set_blas(threads)
    try:
        yield Split(cores, max(0, int(workers)), threads, blas_pools(), limiter is not None)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
