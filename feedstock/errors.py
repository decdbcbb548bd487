"""The few exception types users catch, and the one rule for spelling a setting in a message.

A message that names a setting writes it as a reference: ``{batch_size}`` (the name) or
``{drop_last=False}`` (a value of it, as a Python literal). ``str(error)`` spells them as
the library's arguments (``batch_size``, ``drop_last=False``); each front end renders the
same error with its own spelling (the CLI: ``--batch-size``, ``--no-drop-last``; a YAML
file or a param_str: its keys), so a message names a value the way the user gave it.
"""
from __future__ import annotations

import re
import zipfile
import zlib
from typing import Callable, Iterator, Optional, Sequence, Tuple

_REF = re.compile(r"\{\{|\{([A-Za-z_][A-Za-z0-9_]*)(?:=([^{}]*))?\}")  # "{{": a literal "{"
Spell = Callable[[str, Optional[str]], str]  # (key, value literal or None) -> the text a user reads
Done = Callable[[str, str], bool]  # (key, value literal) -> whether the command already set it so


def library_spelling(key: str, value: Optional[str]) -> str:
    return key if value is None else f"{key}={value}"


def references(template: str) -> Iterator[Tuple[str, Optional[str]]]:
    """The ``(key, value or None)`` settings a template refers to."""
    for m in _REF.finditer(template):
        if m.group(1):
            yield m.group(1), m.group(2)


def literal(text: str) -> str:
    """``text`` (a record key, an error from elsewhere) as template text that names no setting."""
    return str(text).replace("{", "{{")


def spell(template: str, spelling: Spell = library_spelling) -> str:
    """``template`` with each ``{key}`` / ``{key=value}`` written by ``spelling``."""
    return _REF.sub(lambda m: spelling(m.group(1), m.group(2)) if m.group(1) else "{", template)


def _never(key: str, value: str) -> bool:
    return False


class FeedstockError(Exception):
    """Base of every error feedstock raises on purpose."""


class Spelled:
    """An error whose message is ``what`` and the ``fixes`` (templates), rendered per front end.

    A fix whose settings the command already made (``done``) is left out: a message never
    tells a user to do what they did.
    """

    what: str = ""
    fixes: Tuple[str, ...] = ()

    def render(self, spelling: Spell = library_spelling, done: Done = _never) -> str:
        fixes = [spell(f, spelling) for f in self.fixes if not _already(f, done)]
        return ": ".join([spell(self.what, spelling), *(["; ".join(fixes)] if fixes else [])])


def _already(fix: str, done: Done) -> bool:
    settings = [(k, v) for k, v in references(fix) if v is not None]
    return bool(settings) and all(done(k, v) for k, v in settings)


def summary(error: BaseException) -> str:
    """``error``'s message without a worker's traceback (what a remote client or a log line gets)."""
    text = error.render() if isinstance(error, Spelled) else str(error)
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


class KeyedError(Spelled, FeedstockError, ValueError):
    """A bad value or a limit that names settings by reference (see the module docstring)."""

    def __init__(self, what: str, fixes: Sequence[str] = ()):
        self.what, self.fixes = what, tuple(fixes)
        super().__init__(self.render())


class ShapeError(KeyedError):
    """A record whose field does not fit the batch (another size, another number of channels)."""


SHAPE_FIXES = ("give every record one size: resize with {new_height}/{new_width} or crop with {crop_size}",)


# What reading a damaged .npz snapshot raises (truncated: BadZipFile or EOFError; a flipped bit:
# zlib.error, a CRC BadZipFile, bad JSON), for one message naming the file.
SNAPSHOT_ERRORS = (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def unreadable_snapshot(path: object, error: BaseException) -> str:
    """The one line for a snapshot that cannot be read: missing (OSError) or damaged (anything else)."""
    if isinstance(error, OSError) and error.strerror:
        return f"{path}: cannot read the snapshot ({error.strerror}): check the path"
    reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
    return (f"{path}: not a readable feedstock snapshot ({type(error).__name__}: {reason}): it is truncated or "
            "damaged; use another snapshot, or train again")


class RecordError(FeedstockError, ValueError):
    """A record could not be read, parsed or decoded; names the file/key/line."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


# What to do about a record that raised, when its error names no better fix.
RECORD_FIXES = ("fix or remove that record, or skip bad records with {on_error='skip'}",)


class WorkerError(Spelled, FeedstockError, RuntimeError):
    """A worker failed; carries the record key (the record that raised, sent with the error) and the
    worker's traceback text. ``message`` is a template (:func:`literal` around foreign text);
    ``str()`` holds the traceback, :meth:`render` is the one-line message."""

    def __init__(self, message: str, *, key: str | None = None, worker_traceback: str = "",
                 fixes: Sequence[str] = ()):
        self.key = key
        self.worker_traceback = worker_traceback
        self.what = message if key is None or key in message else f"record {literal(key)}: {message}"
        self.fixes = tuple(fixes)
        text = spell(self.what)
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
