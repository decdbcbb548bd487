"""The user's files: where a command may write, what it may replace, and what it removes when it fails.

Every writing command (demo, train, predict, build-lmdb, merge-lmdb, compute-mean,
keygen, inspect --grid, bench --plot) goes through these rules before it writes:

- an output is never the current folder, a folder holding it, or a path that is
  or holds one of the command's inputs (compared after resolving symlinks and ``..``);
- an existing output folder is replaced only when the command recognises it as
  its own (the marker file :data:`MARKER` it wrote, naming the command) or with
  ``--force``; an empty folder may be used;
- a replaced folder is rebuilt beside the old one (``OUT.partial``) and swapped in
  only when the run succeeds (:class:`StagedDir`); a folder updated in place
  (``train``) loses on failure exactly the entries the run added (:class:`UpdateDir`);
- a file is written to a temporary name beside it and renamed over it at the end
  (:func:`atomic_file`), so a failure (error, Ctrl-C, full disk) leaves no partial file.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]
MARKER = ".feedstock-output"


def resolved(path: PathLike) -> str:
    """The absolute path with symlinks and ``..`` resolved (what two spellings are compared by)."""
    return os.path.realpath(os.fspath(path))  # ".." after a symlink: its target's parent, as the OS goes


def is_within(path: str, folder: str) -> bool:
    """True when resolved ``path`` is ``folder`` or lies below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output(out: PathLike, *, flag: str = "--out", inputs: Iterable[Optional[PathLike]] = ()) -> None:
    """ValueError when ``out`` is the current folder or one of its ancestors, or is or holds an input."""
    real, shown = resolved(out), os.fspath(out)
    if is_within(resolved(os.getcwd()), real):
        raise ValueError(f"{flag} {shown!r} is the current folder or holds it: name a folder of its own "
                         f"for the output (e.g. {flag} results)")
    for item in inputs:
        if item is None or os.fspath(item) == "":
            continue
        real_input = resolved(item)
        if is_within(real_input, real):
            how = "is" if real_input == real else "holds"
            raise ValueError(f"{flag} {shown!r} {how} the input {os.fspath(item)!r}: the output would overwrite "
                             "it; choose an output outside the inputs")


def write_marker(folder: PathLike, command: str) -> None:
    """Mark ``folder`` as the output of ``command`` (a small JSON file)."""
    Path(folder, MARKER).write_text(json.dumps({"command": command}) + "\n", encoding="utf-8")


def owner(folder: PathLike) -> Optional[str]:
    """The command whose marker ``folder`` holds, or None."""
    try:
        return str(json.loads(Path(folder, MARKER).read_text(encoding="utf-8"))["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_replaceable(out: PathLike, command: str, *, force: bool, flag: str = "--out",
                      recognise: Optional[Callable[[str], bool]] = None) -> bool:
    """Whether ``out`` exists; FileExistsError unless it is empty, recognised as ``command``'s or ``force``."""
    path = os.fspath(out)
    if not os.path.lexists(path):
        return False
    if force:
        return True
    if not os.path.isdir(path):
        raise FileExistsError(f"{flag} {path!r} exists and is not a folder: pass --force to replace it "
                              "or choose another name")
    ours = owner(path) == command or (recognise is not None and recognise(path))
    if not ours and os.listdir(path):
        raise FileExistsError(f"{flag} {path!r} exists and is not a feedstock {command} output (no {MARKER}): "
                              "pass --force to replace it or choose another folder")
    return True


def remove(path: PathLike) -> None:
    """Delete a file, link or folder tree if it exists."""
    path = os.fspath(path)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def swap_in(new: PathLike, out: PathLike) -> None:
    """Rename ``new`` to ``out``; an existing ``out`` is moved aside first and removed only after the rename."""
    new, out = os.fspath(new), os.fspath(out).rstrip(os.sep)
    if not os.path.lexists(out):
        os.rename(new, out)
        return
    old = f"{out}.old-{os.getpid()}"
    remove(old)
    os.rename(out, old)
    try:
        os.rename(new, out)
    except BaseException:
        os.rename(old, out)  # the previous output comes back untouched
        raise
    remove(old)


class StagedDir:
    """An output folder built at ``OUT.partial`` and swapped for ``OUT`` only when the run succeeds.

    ``with StagedDir(out, "demo", force=...) as stage:`` write under ``stage.path``; an
    exception (or Ctrl-C) removes the partial folder and leaves any previous ``OUT`` as it was.
    """

    def __init__(self, out: PathLike, command: str, *, force: bool = False, flag: str = "--out",
                 inputs: Iterable[Optional[PathLike]] = ()) -> None:
        self.out = os.fspath(out).rstrip(os.sep) or os.sep
        self.command, self.force, self.flag = command, force, flag
        self.path = self.out + ".partial"
        self.parents: List[Path] = []
        check_output(self.out, flag=flag, inputs=inputs)
        check_replaceable(self.out, command, force=force, flag=flag)
        if os.path.lexists(self.path) and owner(self.path) != command and not force:
            raise FileExistsError(f"{self.path!r} exists and is not a feedstock {command} output: "
                                  "remove it or pass --force")

    def __enter__(self) -> "StagedDir":
        remove(self.path)  # a killed run's leftover (checked above to be ours, or --force)
        self.parents = _missing_parents(Path(self.path).parent)
        os.makedirs(self.path)
        write_marker(self.path, self.command)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            remove(self.path)
            _remove_empty(self.parents)
            return
        swap_in(self.path, self.out)

    def final(self, path: PathLike) -> str:
        """Where a file written under the partial folder lies once published."""
        rel = os.path.relpath(os.fspath(path), self.path)
        return self.out if rel == "." else os.path.join(self.out, rel)


class UpdateDir:
    """An output folder written in place (``train``: its snapshots live there and ``--resume`` reads them).

    An existing folder must be empty, this command's (marker) or ``force``d. On failure the
    entries this run added are removed (the folder too when the run created it); entries
    that were there before are left alone.
    """

    def __init__(self, out: PathLike, command: str, *, force: bool = False, flag: str = "--out",
                 inputs: Iterable[Optional[PathLike]] = ()) -> None:
        self.path, self.command = os.fspath(out), command
        check_output(self.path, flag=flag, inputs=inputs)
        existed = check_replaceable(self.path, command, force=force, flag=flag)
        self.replace_file = existed and not os.path.isdir(self.path)  # --force over a file: removed on entry
        self.created = not existed or self.replace_file
        self.before: List[str] = []
        self.parents: List[Path] = []

    def __enter__(self) -> "UpdateDir":
        if self.replace_file:
            remove(self.path)
        self.parents = _missing_parents(Path(self.path).parent)
        os.makedirs(self.path, exist_ok=True)
        self.before = sorted(os.listdir(self.path))
        if owner(self.path) != self.command:
            write_marker(self.path, self.command)
        return self

    def rollback(self) -> None:
        """Remove what this run added (all of the folder when the run created it)."""
        if self.created:
            remove(self.path)
            _remove_empty(self.parents)
            return
        keep = set(self.before)
        for name in os.listdir(self.path):
            if name not in keep:
                remove(os.path.join(self.path, name))

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.rollback()


def check_file_output(path: PathLike, *, flag: str, inputs: Iterable[Optional[PathLike]] = ()) -> None:
    """A file output: not a folder, not one of the inputs nor an existing file inside one."""
    shown = os.fspath(path)
    if shown.endswith(os.sep) or os.path.isdir(shown):
        raise ValueError(f"{flag} {shown!r} is a directory, not a file: give a file path to write")
    real, exists = resolved(path), os.path.lexists(shown)
    for item in inputs:
        if item is None or not os.fspath(item):
            continue
        real_input = resolved(item)
        if real == real_input or (exists and is_within(real, real_input)):
            raise ValueError(f"{flag} {shown!r} is {'the' if real == real_input else 'a file of the'} input "
                             f"{os.fspath(item)!r}: the output would overwrite it; choose another name")


@contextlib.contextmanager
def atomic_file(path: PathLike) -> Iterator[str]:
    """Yield a temporary name beside ``path`` (same suffix, for writers that pick a format by it);
    renamed over ``path`` on success, removed on failure. Parent folders made here go on failure too.
    A ``path`` that exists and is no regular file (a device such as /dev/null, a pipe) is yielded as it is."""
    target = Path(path)
    if os.path.exists(target) and not os.path.isfile(target):
        yield str(target)  # never rename over a device or a pipe
        return
    made = _missing_parents(target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.partial-{os.getpid()}{target.suffix}")
    try:
        yield str(tmp)
        os.replace(tmp, target)
    except BaseException:
        remove(tmp)
        _remove_empty(made)
        raise


def _remove_empty(folders: List[Path]) -> None:
    """Remove the folders a failed run made (deepest first), where they are still empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _missing_parents(folder: Path) -> List[Path]:
    """The folders from ``folder`` up that do not exist yet, deepest first."""
    out: List[Path] = []
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out
