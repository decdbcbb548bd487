"""The pairs branch of the stream definition: which pairs source a Stream names.

``source`` (+ ``masks``, ``root_folder``) of a ``source_type="pairs"`` stream is one of

* an images folder, with ``masks`` the masks folder: pairs matched by relative stem
  (``images/a/x.jpg`` with ``masks/a/x.png``); ``root_folder`` must be empty;
* a pairs list file (``<image> <mask>`` lines, split rule in
  :mod:`feedstock.loaders.pairs_list`), each path prefixed with ``root_folder``;
  ``masks`` must be empty;
* an image LMDB (a folder holding ``data.mdb``), with ``masks`` the label LMDB of
  the same keys in the same order (:class:`LmdbPairs`).

Under ``on_error="skip"`` an image without a mask is kept and fails when read, so
the Loader skips and reports it (otherwise construction lists all such images).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Tuple, Union

from .decode import force_mode
from .lmdb_pairs import LmdbPairs
from .open_source import lmdb_dir
from .pairs import Pairs
from .pairs_list import read_pairs_list
from .strings import cut

log = logging.getLogger(__name__)

PairsSource = Union[Pairs, LmdbPairs]


def open_pairs(source: str, masks: str = "", *, root_folder: str = "", color: bool = True,
               mode: str = "native", allow_missing: bool = False) -> PairsSource:
    """The pairs source that ``source``/``masks``/``root_folder`` name (see the module docstring)."""
    if not source:
        raise ValueError("source= is required for pairs (images folder, pairs list file or image LMDB)")
    if lmdb_dir(source):
        if not masks or not lmdb_dir(masks):
            raise ValueError(f"masks={masks!r} must be the label LMDB (same keys) for the image LMDB {source!r}")
        return LmdbPairs(lmdb_dir(source), lmdb_dir(masks), mode=mode)
    if os.path.isdir(source):
        if not masks:
            raise ValueError(f"masks= (the masks folder) is required with the images folder {source!r}")
        if root_folder:
            raise ValueError(f"root_folder={root_folder!r} applies to a pairs list file, not to folders "
                             f"({source!r}, {masks!r})")
        return Pairs(source, masks, color=color, allow_missing=allow_missing)
    if os.path.isfile(source):
        if masks:
            raise ValueError(f"masks={masks!r} must be empty with the pairs list file {source!r} "
                             "(the list names both paths)")
        return Pairs(read_pairs_list(source, root_folder), color=color)
    raise ValueError(f"source={cut(repr(source))} does not exist (pairs: images folder, pairs list file or image LMDB)")


def pairs_source(stream: Any) -> PairsSource:
    """The pairs source of a Stream (``source``, ``masks``, ``root_folder``, ``is_color``, ``on_error``)."""
    return open_pairs(stream.source, stream.masks, root_folder=stream.root_folder,
                      color=bool(stream.is_color) or bool(stream.force_color), mode=force_mode(stream.force_color, stream.force_gray),
                      allow_missing=stream.on_error == "skip")


def max_image_hw(source: PairsSource) -> Tuple[int, int]:
    """The largest image height and width over the source, from headers only (no decode)."""
    best_h = best_w = 0
    for i in range(len(source)):
        try:
            h, w = source.image_hw(i)
        except Exception as exc:  # the Loader reports the record when it reads it
            log.debug("no header size for %s: %s", source.key(i), exc)
            continue
        best_h, best_w = max(best_h, h), max(best_w, w)
    if not best_h:
        raise ValueError(f"no image of {source!r} has a readable size")
    return best_h, best_w
