"""open_source: pick the source type from what a path looks like (for CLI tools and library users).

The built-in kinds are tried first, in :data:`GUESSES` order; a kind registered with
:func:`feedstock.stream.kinds.register` (and a ``guess``) is added after them through
:func:`add_kind`, so ``open_source`` and a Stream guess and open the same kinds. The
registry pushes its kinds down here, so this module imports nothing above ``loaders``.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Tuple

from .base import Source
from .strings import cut

_H5_EXTENSIONS = (".h5", ".hdf5", ".he5")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: str) -> bool:
    """HDF5's superblock signature at offset 0, 512, 1024, 2048, ... (after a user block), as H5Fis_hdf5.

    Read by hand, not with h5py: h5py's bundled libhdf5 clashes with the one Caffe links, so
    guessing a list file's kind inside the caffe binary must not import it.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset = 0
        while offset + len(_HDF5_SIGNATURE) <= size:
            f.seek(offset)
            if f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def _first_lines(path: str, limit: int = 20) -> list[str]:
    lines = []
    with open(path, "rb") as f:
        for raw in f:
            line = os.fsdecode(raw).rstrip("\r\n")
            if line.strip():
                lines.append(line)
            if len(lines) >= limit:
                break
    return lines


def _looks_like_list_line(line: str) -> bool:
    head, space, label = line.rstrip().rpartition(" ")
    return bool(space and head) and label.lstrip("+-").isdigit()


def _text_kind(path: str) -> Optional[str]:
    """"hdf5" for a list of .h5 paths, "list" for Caffe ``<path> <label>`` lines, else None."""
    lines = _first_lines(path)
    if not lines:
        return None
    if all(tok.lower().endswith(_H5_EXTENSIONS) for line in lines for tok in line.split()):
        return "hdf5"
    if all(_looks_like_list_line(line) for line in lines):
        return "list"
    return None


def lmdb_dir(path: str) -> str:
    """The LMDB environment directory ``path`` names (the folder, or its data.mdb); "" when it is none."""
    if os.path.isdir(path):
        return path if os.path.isfile(os.path.join(path, "data.mdb")) else ""
    if os.path.basename(path) == "data.mdb" and os.path.isfile(path):
        return os.path.dirname(path) or "."
    return ""


def is_lmdb(path: str) -> bool:
    """A folder holding data.mdb, or that data.mdb itself."""
    return bool(lmdb_dir(path))


def is_class_folder(path: str) -> bool:
    """A folder with subfolders (one per class)."""
    if not os.path.isdir(path):
        return False
    with os.scandir(path) as entries:
        return any(e.is_dir() for e in entries)


def is_csv(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(".csv")


def is_hdf5(path: str) -> bool:
    """An HDF5 file (by extension or signature) or a text list of .h5 files."""
    if not os.path.isfile(path):
        return False
    return path.lower().endswith(_H5_EXTENSIONS) or _is_hdf5(path) or _text_kind(path) == "hdf5"


def is_list_file(path: str) -> bool:
    """A Caffe list file: ``<path> <label>`` lines."""
    return os.path.isfile(path) and _text_kind(path) == "list"


# the built-in kinds in the order a path is tried against them (the stream's registry reuses these)
GUESSES = (("lmdb", is_lmdb), ("folder", is_class_folder), ("csv", is_csv), ("hdf5", is_hdf5),
           ("list", is_list_file))


def unknown_kind(path: str) -> ValueError:
    """The error for a path that no kind claims, saying what it is and what was expected."""
    if os.path.isdir(path):
        return ValueError(f"{path!r} is a directory with neither data.mdb (LMDB) nor class subfolders")
    if not os.path.exists(path):
        return ValueError(f"{cut(repr(path))} does not exist: check the path")
    return ValueError(
        f"cannot tell the format of {path!r}: expected an LMDB directory, a .csv, an .h5 file, "
        "a list of .h5 files, a Caffe list file ('<path> <label>' lines) or a folder of class folders"
    )


Guess = Callable[[str], bool]
Opener = Callable[..., Source]  # (path, **kwargs) -> Source
_ADDED: Dict[str, Tuple[Guess, Opener]] = {}  # registered kinds, tried after the built-in ones


def add_kind(name: str, guess: Guess, opener: Opener) -> None:
    """Let :func:`guess_kind` and :func:`open_source` reach a registered kind (the registry calls this)."""
    if name in dict(GUESSES) or name in _ADDED:
        raise ValueError(f"source kind {name!r} is registered already")
    _ADDED[name] = (guess, opener)


def remove_kind(name: str) -> None:
    """Undo :func:`add_kind` (the built-in kinds stay)."""
    _ADDED.pop(name, None)


def guess_kind(path: str) -> str:
    """One of "lmdb", "csv", "hdf5", "list", "folder" or a registered kind; ValueError when the path fits none."""
    for kind, fits in GUESSES + tuple((name, fits) for name, (fits, _) in _ADDED.items()):
        if fits(path):
            return kind
    raise unknown_kind(path)


guess_path_kind = guess_kind  # the name the stream registry imports it by (it has a guess_kind of its own)


def open_source(path: str | os.PathLike, **kwargs: Any) -> Source:
    """Open ``path`` with the source its kind calls for; ``kwargs`` go to that source."""
    from . import CaffeLmdb, CsvTable, Hdf5, ImageFolder, ListFile

    path = os.fspath(path)
    kind = guess_kind(path)
    if kind in _ADDED:
        return _ADDED[kind][1](path, **kwargs)
    if kind == "lmdb":
        path = lmdb_dir(path)
    factory = {"lmdb": CaffeLmdb, "csv": CsvTable, "hdf5": Hdf5, "list": ListFile, "folder": ImageFolder}[kind]
    return factory(path, **kwargs)
