"""open_source: pick the source type from what a path looks like (for CLI tools)."""
from __future__ import annotations

import os
from typing import Optional

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


def guess_kind(path: str) -> str:
    """One of "lmdb", "csv", "hdf5", "list", "folder"; ValueError when the path fits none."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "data.mdb")):
            return "lmdb"
        with os.scandir(path) as entries:
            if any(e.is_dir() for e in entries):
                return "folder"
        raise ValueError(f"{path!r} is a directory with neither data.mdb (LMDB) nor class subfolders")
    if not os.path.isfile(path):
        raise ValueError(f"{cut(repr(path))} does not exist: check the path")
    lower = path.lower()
    if os.path.basename(lower) == "data.mdb":
        return "lmdb"
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(_H5_EXTENSIONS) or _is_hdf5(path):
        return "hdf5"
    kind = _text_kind(path)
    if kind is None:
        raise ValueError(
            f"cannot tell the format of {path!r}: expected an LMDB directory, a .csv, an .h5 file, "
            "a list of .h5 files, a Caffe list file ('<path> <label>' lines) or a folder of class folders"
        )
    return kind


def open_source(path: str | os.PathLike, **kwargs) -> Source:
    """Open ``path`` with the source its kind calls for; ``kwargs`` go to that source."""
    from . import CaffeLmdb, CsvTable, Hdf5, ImageFolder, ListFile

    path = os.fspath(path)
    kind = guess_kind(path)
    if kind == "lmdb":
        path = lmdb_dir(path)
    factory = {"lmdb": CaffeLmdb, "csv": CsvTable, "hdf5": Hdf5, "list": ListFile, "folder": ImageFolder}[kind]
    return factory(path, **kwargs)
