"""One-line messages for the errors a CLI user can act on: disk, permissions, paths, LMDB, ports,
records and settings (spelled as this command line gave them: flags, or the --config file's keys)."""
from __future__ import annotations

import argparse
import ast
import errno
import os
import re
from typing import Dict, List, Mapping, Optional

from ..errors import RECORD_FIXES, FeedstockError, KeyedError, Spelled, WorkerError, literal
from ..loaders.strings import ECHO_CHARS, cut

_FREE_SPACE = "free space on that disk or write somewhere else"
_HINTS: Dict[int, str] = {
    errno.ENOSPC: _FREE_SPACE,
    errno.EDQUOT: "your disk quota is used up: " + _FREE_SPACE,
    errno.EFBIG: "file size limit reached (ulimit -f, or the filesystem's): raise it, or write elsewhere",
    errno.EACCES: "check the permissions of the path and its folders, or choose another path",
    errno.EPERM: "check the permissions of the path and its folders, or choose another path",
    errno.EROFS: "the filesystem is read-only: choose another path",
    errno.ENOENT: "check the path (and that its folder exists)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "the path is a folder: give a file path",
    errno.EEXIST: "it already exists: remove it, choose another path or pass --force where offered",
    errno.EMFILE: "too many open files: raise `ulimit -n` or use fewer workers",
    errno.ENOMEM: "out of memory: use fewer workers, a smaller batch or prefetch",
    errno.EADDRINUSE: "another process already uses that port: stop it or choose another port",
    errno.EADDRNOTAVAIL: "that address is not one of this host's: bind to one of its addresses or 0.0.0.0",
    errno.EIO: "a write or read failed (often a full disk or a file size limit): " + _FREE_SPACE,
    errno.ENODEV: "no interface has that address: check the endpoint's host",
    errno.ECONNREFUSED: "nothing listens there: start `feedstock serve` first or check the endpoint",
}
_STRERRORS = {os.strerror(code): code for code in _HINTS}
# Arguments that name what a command writes (where a full disk or a permission error strikes when
# the error itself names no file), then what it reads.
_OUTPUT_ARGS = ("out", "npy", "grid", "predict", "snapshot_out")
_INPUT_ARGS = ("src", "db", "path", "data", "snapshot", "train", "source", "shards")
_ENDPOINT_ARGS = ("bind", "remote", "endpoint", "connect")


def one_line(text: str) -> str:
    """``text`` on one line (multi-line messages joined with "; ")."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _arg_values(args: argparse.Namespace, names: tuple) -> List[str]:
    out: List[str] = []
    for name in names:
        value = getattr(args, name, None)
        values = value if isinstance(value, (list, tuple)) else [value]
        out += [os.fspath(v) for v in values if isinstance(v, (str, os.PathLike)) and os.fspath(v)]
    return out


def _where(args: argparse.Namespace, names: tuple, label: str) -> str:
    values = _arg_values(args, names)
    return f" ({label} {', '.join(values)})" if values else ""


def _code_of(e: BaseException) -> Optional[int]:
    code = getattr(e, "errno", None)
    if isinstance(code, int) and code in _HINTS:
        return code
    text = str(e)
    return next((c for s, c in _STRERRORS.items() if s in text), None)


def cut_tokens(text: str) -> str:
    """Every run of characters without a space cut to the echo length (a 1 MB path in a message)."""
    return re.sub(r"\S{%d,}" % (ECHO_CHARS + 1), lambda m: cut(m.group(0)), text)


def _with_hint(message: str, code: Optional[int]) -> str:
    return f"{message}: {_HINTS[code]}" if code in _HINTS else message


def _os_message(e: OSError, args: argparse.Namespace) -> str:
    reason = e.strerror or one_line(str(e))
    paths = [cut(repr(os.fspath(p))) for p in (e.filename, e.filename2) if p is not None]
    if paths:
        message = f"{reason}: {' -> '.join(paths)}"
    else:  # e.g. a write that fills the disk: the error names no file, the command's outputs are likely
        message = reason + (_where(args, _OUTPUT_ARGS, "writing") or _where(args, _INPUT_ARGS, "reading"))
    return _with_hint(message, _code_of(e))


def _lmdb_message(e: Exception, args: argparse.Namespace) -> str:
    import lmdb  # a subclass of lmdb.Error was raised: lmdb is loaded already

    text = one_line(str(e))
    where = "" if text.startswith(("/", ".")) else (
        _where(args, _OUTPUT_ARGS, "database") or _where(args, _INPUT_ARGS, "database"))
    message = f"LMDB error{where}: {text}"
    if isinstance(e, lmdb.MapFullError):
        return f"{message}: the database's map size is used up; " + _FREE_SPACE
    if isinstance(e, lmdb.ReadonlyError):
        return f"{message}: the database was opened read-only or its folder is not writable"
    if isinstance(e, (lmdb.CorruptedError, lmdb.InvalidError, lmdb.VersionMismatchError)):
        return f"{message}: not a readable LMDB (corrupt, or from another LMDB version); rebuild it"
    return _with_hint(message, _code_of(e))


def _zmq_message(e: Exception, args: argparse.Namespace) -> str:
    where = _where(args, _ENDPOINT_ARGS, "endpoint")
    return _with_hint(f"ZeroMQ error{where}: {one_line(str(e))}", _code_of(e))


def _opencv_message(e: Exception, args: argparse.Namespace) -> str:
    # cv2.error carries the bare reason in .err ("could not find a writer for the specified extension")
    text = str(getattr(e, "err", None) or e)
    lines = (line.strip().lstrip(">").strip().rstrip(":") for line in text.splitlines())  # "> why:" lines
    reason = "; ".join(line for line in lines if line)
    where = _where(args, _OUTPUT_ARGS, "writing") or _where(args, _INPUT_ARGS, "reading")
    return f"OpenCV error{where}: {reason}: check the file name's extension and the image"


def _literal(value: str) -> object:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _yaml(value: object) -> str:
    """A value as a YAML file writes it (``true``, ``null``, ``40``)."""
    if value is None or isinstance(value, bool):
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


class CliSpelling:
    """Settings as this command line names them: a flag the user gave (or may give) by its flag, a
    value from the ``--config`` file by its key; a fix already in effect is left out."""

    def __init__(self, args: argparse.Namespace, options: Mapping[str, argparse.Action]):
        self.args, self.options = args, options
        self.from_config = set(getattr(args, "config_keys", ())) - set(getattr(args, "flag_keys", ()))

    def __call__(self, key: str, value: Optional[str]) -> str:
        action = self.options.get(key)
        given = None if value is None else _literal(value)
        if isinstance(given, tuple) and len(set(given)) == 1 and getattr(action, "type", None) in (int, float):
            given, value = given[0], repr(given[0])  # a square crop (40, 40) is the flag's (and the key's) 40
        if action is None:
            return key if value is None else f"{key}={value}"  # the library's name
        if key in self.from_config:  # the --config file's key, as YAML writes it
            return key if value is None else f"{key}: {_yaml(given)}"
        if not action.option_strings:
            return action.metavar if isinstance(action.metavar, str) else key.upper()
        flag = max((o for o in action.option_strings if not o.startswith("--no-")), key=len)
        if value is None:
            return flag
        if isinstance(action, argparse.BooleanOptionalAction):
            return flag if given else flag.replace("--", "--no-", 1)
        if action.nargs == 0:  # store_const / store_true
            return flag if given == action.const else f"no {flag}"
        return f"{flag} {given}" if isinstance(given, str) else f"{flag} {value}"

    def done(self, key: str, value: str) -> bool:
        current = getattr(self.args, key, None)
        return current is not None and current == _literal(value)


def _spelled(e: BaseException, args: argparse.Namespace, options: Mapping[str, argparse.Action]) -> str:
    spelling = CliSpelling(args, options)
    return _as_spelled(e).render(spelling, spelling.done)


def _as_spelled(e: BaseException) -> Spelled:
    """``e`` itself when it spells its settings; else its text (naming the ``record_key`` a record
    set on it where no worker wrapped it: bench's stages, inspect) as a template naming none."""
    key = getattr(e, "record_key", None)
    if isinstance(e, Spelled):
        if key is None or isinstance(e, WorkerError):  # a WorkerError names its record already
            return e
        what, fixes = e.what, e.fixes
    else:
        what, fixes = literal(one_line(str(e))), getattr(e, "record_fixes", RECORD_FIXES if key is not None else ())
    return KeyedError(what if key is None else f"record {literal(str(key))}: {what}", fixes)


def describe(e: BaseException, args: argparse.Namespace,
             options: Optional[Mapping[str, argparse.Action]] = None) -> Optional[str]:
    """The one-line message for an error a user can act on; None for anything else (a bug).

    ``options``: the command's arguments by ``dest`` (to spell settings as its flags)."""
    message = _describe(e, args, options or {})
    return None if message is None else cut_tokens(one_line(message))


def _describe(e: BaseException, args: argparse.Namespace, options: Mapping[str, argparse.Action]) -> Optional[str]:
    module = type(e).__module__.split(".")[0]
    if module == "lmdb" and isinstance(e, Exception):
        return _lmdb_message(e, args)
    if module == "zmq" and isinstance(e, Exception):
        return _zmq_message(e, args)
    if module == "cv2" and isinstance(e, Exception):
        return _opencv_message(e, args)
    if isinstance(e, OSError) and not isinstance(e, Spelled):
        return _os_message(e, args)
    if isinstance(e, (ValueError, FeedstockError)):
        return _spelled(e, args, options)
    return None
