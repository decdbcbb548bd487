"""Starting spawned workers safely: a small start-up payload, and named causes when a worker never starts.

``spawn`` and ``forkserver`` send each new worker its target and arguments through a
pipe, pickled, and the new process reads them only after it has re-imported the main
script. If that payload were larger than a pipe buffer (64 KiB; a source pickles with
every key), ``Process.start()`` would block until the worker has finished importing the
main script, which for a script without ``if __name__ == "__main__":`` means running it.
So the factory travels as a :class:`PackedFactory`: pickled once in the main process,
inline when small, else in a /dev/shm file that the worker reads; unpickling it happens in
the worker's own code, where an import error becomes a start-up error naming the module.

A process still being bootstrapped (``current_process()._inheriting``) that tries to start
workers is a main script without the guard: :func:`refuse_in_bootstrap` ends it with
:data:`EXIT_NO_MAIN_GUARD`, which the pool turns into an error naming the fix.
"""
from __future__ import annotations

import logging
import multiprocessing
import pickle
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .shm import read_blob, write_blob

log = logging.getLogger(__name__)

HandlerFactory = Callable[[int], Callable[[Any], Any]]

INLINE_BYTES = 16 << 10  # a factory up to this size travels in the start-up pipe itself
EXIT_NO_MAIN_GUARD = 87  # exit status of a bootstrapping process that tried to start workers
GUARD = '`if __name__ == "__main__":`'
NO_MAIN_GUARD = (
    "this process is a feedstock worker still importing the main script (start method spawn or "
    "forkserver re-runs it in every worker), and that script starts a Loader or pool at import time. "
    f"Put the script's top-level code under {GUARD}.")
UNPICKLE_HINT = (
    "spawned workers import the classes of the source and transforms by module name: define them at "
    f"the top level of an importable module (not in an interactive session, nor only under {GUARD}), "
    "or use start_method='fork'")


def refuse_in_bootstrap() -> None:
    """Exit (status EXIT_NO_MAIN_GUARD) when called while this process is being spawned: starting
    workers here would recurse, or run the whole script in a worker while the main process waits."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        log.error(NO_MAIN_GUARD)
        raise SystemExit(EXIT_NO_MAIN_GUARD)


@dataclass(frozen=True)
class PackedFactory:
    """A factory pickled in the main process: the bytes (``data``) or the /dev/shm file holding them."""

    data: bytes = b""
    blob: Optional[str] = None

    @classmethod
    def of(cls, factory: HandlerFactory) -> "PackedFactory":
        try:
            data = pickle.dumps(factory, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:  # a lambda, a local class, a handle
            raise TypeError(f"cannot send the workers' plan (source and transforms) to spawned workers: {exc}. "
                            f"{UNPICKLE_HINT}") from exc
        return cls(data=data) if len(data) <= INLINE_BYTES else cls(blob=write_blob(data))

    def load(self) -> HandlerFactory:
        try:
            data = read_blob(self.blob) if self.blob else self.data
        except FileNotFoundError as exc:
            raise RuntimeError(f"the worker's plan {exc.filename} is gone (its owner closed or died)") from None
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise RuntimeError(f"could not unpickle the worker's plan ({type(exc).__name__}: {exc}); "
                               f"{UNPICKLE_HINT}") from exc


def main_path() -> str:
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return repr(path) if path else "(interactive)"


def start_hint(start_method: str) -> str:
    """What ends a worker before it starts, and what to do about it."""
    if start_method == "fork":
        return "See the worker's output on stderr."
    return (f"With start_method={start_method!r} each worker first re-imports the main script {main_path()} "
            "and the modules of what it runs: an import that fails there (the traceback is on stderr "
            f"above), or a script that does its work without an {GUARD} guard, ends it. Fix the import "
            "or add the guard (or use start_method='fork').")


def not_started(head: str, code: int, start_method: str) -> str:
    """Why a worker that exited by itself (status ``code``) before its factory returned did so."""
    if code == EXIT_NO_MAIN_GUARD:
        return (f"{head}: it re-ran the main script {main_path()} (start_method={start_method!r}), which "
                f"creates a Loader or pool at import time. Put the script's top-level code under {GUARD} "
                "(or use start_method='fork').")
    return f"{head}. {start_hint(start_method)}"
