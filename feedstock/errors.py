"""The few exception types users catch."""
from __future__ import annotations


class FeedstockError(Exception):
    """Base of every error feedstock raises on purpose."""


class RecordError(FeedstockError, ValueError):
    """A record could not be read, parsed or decoded; names the file/key/line."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


class WorkerError(FeedstockError, RuntimeError):
    """A worker failed; carries the worker's traceback text and the record key."""

    def __init__(self, message: str, *, key: str | None = None, worker_traceback: str = ""):
        self.key = key
        self.worker_traceback = worker_traceback
        text = message if key is None else f"{message} (record {key})"
        if worker_traceback:
            text += "\n\nWorker traceback:\n" + worker_traceback
        super().__init__(text)


class WorkerDied(WorkerError):
    """A worker process exited (e.g. SIGKILL) and could not be replaced."""


class WorkerTimeout(WorkerError):
    """A worker did not finish a task within the loader's timeout."""


class TooManyBadRecords(FeedstockError, RuntimeError):
    """``on_error='skip'`` skipped more than ``max_bad_fraction`` of the records."""


class ShmSpaceError(FeedstockError, OSError):
    """/dev/shm is too small for the requested batch slots."""


class RemoteError(FeedstockError, RuntimeError):
    """A remote feed server reported an error (its message names the record), or broke the protocol."""


class ServerLost(RemoteError):
    """A remote feed server went silent and did not come back within the reconnect window."""


class RemoteSetupError(RemoteError, ValueError):
    """Remote feed servers disagree with each other or with the client's settings (seed, parts, shapes)."""
