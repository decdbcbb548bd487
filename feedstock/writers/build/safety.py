"""Where a build may write: never over its source, never scanning its own output as data.

A build of ``SRC`` into ``OUT`` owns three paths: ``OUT``, ``OUT.partial`` (the
local engine's work folder) and ``OUT.parts`` (the ray engine's). ``--force``
deletes them and a folder source would list them as classes, so before anything
is read or removed: an output that is the source or holds it is refused; for a
folder source the three paths are excluded from the scan (compared after
resolving symlinks); and an output that would hide source records (an existing
class folder, list entries below it) is refused instead of silently dropped.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Sequence

from ...loaders.image_folder import Excluded, is_within, walk_images
from ...outputs import check_output
from .output import partial_path
from .plan import Listing, make_listing

MAX_NAMED = 3  # source records named in the refusal message


def parts_path(out: str) -> str:
    """The work folder of a Ray build of ``out``: one shard build per partition."""
    return out.rstrip("/") + ".parts"


def output_paths(out: str) -> List[str]:
    """Every path a build of ``out`` writes or deletes: OUT, OUT.partial, OUT.parts."""
    return [out, partial_path(out), parts_path(out)]


def check_not_source(src: str, outputs: Iterable[str]) -> None:
    """ValueError when an output path is the source or a folder holding it (--force would delete it),
    or the current folder or one of its ancestors."""
    real_src = os.path.realpath(src)
    for path in outputs:
        check_output(path, flag="output")
        real = os.path.realpath(path)
        if real == real_src:
            raise ValueError(f"output {path!r} is the source {src!r}: choose an output outside the source")
        if is_within(real_src, real):
            raise ValueError(f"output {path!r} contains the source {src!r}: choose an output outside the source")


def check_folder_exclusions(src: str, outputs: Sequence[str]) -> None:
    """A folder source: an output inside it must hold no source images (it is excluded from the scan)."""
    real_src = os.path.realpath(src)
    for path in outputs:
        if not os.path.isdir(path) or not is_within(os.path.realpath(path), real_src):
            continue
        images, _ = walk_images(path, Excluded())
        if images:
            named = ", ".join(os.path.relpath(p, src) for p in images[:MAX_NAMED])
            raise ValueError(f"output {path!r} is inside the source {src!r} and holds {len(images)} of its images "
                             f"({named}{', ...' if len(images) > MAX_NAMED else ''}): choose an output outside "
                             "the source")


def check_records_outside(records: Iterable[str], outputs: Sequence[str], src: str) -> None:
    """No file the listing reads (image, HDF5 file) may lie in an output path (checked per folder)."""
    outputs = [p for p in outputs if os.path.lexists(p)]  # nothing lies in what does not exist yet
    if not outputs:
        return
    real_outputs = [os.path.realpath(p) for p in outputs]
    first_in: dict = {}
    for record in records:
        first_in.setdefault(os.path.dirname(os.path.abspath(record)), record)
    for folder, record in first_in.items():
        real = os.path.realpath(folder)
        for path, real_out in zip(outputs, real_outputs):
            if is_within(real, real_out):
                raise ValueError(f"{src}: source record {record!r} lies in the output {path!r}; a build "
                                 "never reads what it writes (or deletes with --force): choose another output")


def listing_files(listing: Listing) -> List[str]:
    """The files a build of ``listing`` reads: images, or the HDF5 files of a table."""
    if listing.paths is not None:
        return listing.paths
    return list(getattr(listing.table, "files", []) or [])


def safe_listing(src: str, kind: str, options: object, outputs: Sequence[str]) -> Listing:
    """The listing of ``src`` after refusing outputs that hide source data.

    ``outputs``: every path the build writes or deletes (:func:`output_paths` of OUT,
    plus the final OUT's of a ray partition); they are never scanned. The caller has
    already refused outputs that are or hold ``src`` (:func:`check_not_source`).
    """
    if kind == "folder":
        check_folder_exclusions(src, outputs)
    listing = make_listing(src, kind, options, exclude=outputs)
    if kind != "folder":  # a folder scan has excluded them already
        check_records_outside(listing_files(listing), outputs, src)
    check_not_a_record(listing_files(listing), outputs, src)
    return listing


def check_not_a_record(records: Sequence[str], outputs: Sequence[str], src: str) -> None:
    """An output path that is an existing file must not be a file the build reads (--force would delete it)."""
    files = {os.path.realpath(p): p for p in outputs if os.path.isfile(p)}
    if not files:
        return
    for record in records:
        path = files.get(os.path.realpath(record))
        if path is not None:
            raise ValueError(f"output {path!r} is a record of the source {src!r}: choose another output")
