"""The registry of source kinds, and the one function from a Stream to its Source.

A kind is one :class:`SourceKind` entry: its name (the stream's ``source_type``),
how a path is recognised as it, how a Stream opens it as a Source, what its
transforms may be, and how ``build-lmdb`` lists it. Adding a kind is one
:func:`register` call and the loader module it opens (docs/pipeline.md, "Adding a
source kind"). Every entry point gets its Source from :func:`source_of`: train,
validation, predict, segmentation predict, serve, bench and the Caffe layer.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from ..loaders.open_source import (
    GUESSES,
    add_kind,
    guess_path_kind,
    is_class_folder,
    is_csv,
    is_hdf5,
    is_list_file,
    is_lmdb,
    remove_kind,
)
from ..pipeline.options import OptionError

if TYPE_CHECKING:
    from ..loaders.base import Source
    from ..transforms.base import Transform
    from ..writers.build.plan import Listing

LABELS = ("required", "optional")


class StreamLike(Protocol):
    """The keys of a stream that choose and open its source (a :class:`~.definition.Stream` has them all;
    declared here so that the registry needs no import of the definition it serves)."""

    @property
    def source(self) -> str: ...
    @property
    def source_type(self) -> str: ...
    @property
    def root_folder(self) -> str: ...
    @property
    def masks(self) -> str: ...
    @property
    def label_column(self) -> str: ...
    @property
    def classes(self) -> str: ...
    @property
    def scales(self) -> Tuple[float, ...]: ...
    @property
    def is_color(self) -> bool: ...
    @property
    def force_color(self) -> bool: ...
    @property
    def force_gray(self) -> bool: ...
    @property
    def on_error(self) -> str: ...


@dataclass(frozen=True)
class Needs:
    """What the caller needs of the Source, beyond the stream's keys."""

    fields: Optional[Tuple[str, ...]] = None  # HDF5 dataset names (Caffe's HDF5Data tops)
    caffe_layout: bool = False  # CSV rows as (F, 1, 1) blobs, the shape Caffe's layers take
    class_names: Optional[Tuple[str, ...]] = None  # the training set's classes: label codes follow them
    labels: str = "required"  # "optional": labels where the data has them, none otherwise (prediction)


Open = Callable[[StreamLike, Needs], "Source"]
OwnTransforms = Callable[[StreamLike, int, Optional["Source"]], List["Transform"]]
Lister = Callable[[str, Any, Sequence[str]], "Listing"]  # (path, build-lmdb's options, folders to skip)


@dataclass(frozen=True)
class SourceKind:
    """One source kind: see the module doc. ``guess`` None: never guessed from a path, named only."""

    name: str
    open: Open
    guess: Optional[Callable[[str], bool]] = None
    images: bool = False  # decoded images: new_height/new_width resize them
    transform_param: bool = True  # takes Caffe's transform_param keys (HDF5Data refuses them)
    rows: bool = False  # feature rows: (F, 1, 1) blobs when Caffe's transformer runs on them
    transforms: Optional[OwnTransforms] = None  # its own transform chain instead of Caffe's
    listing: Optional[Lister] = None  # build-lmdb's hook; None: build-lmdb does not read it


KINDS: Dict[str, SourceKind] = {}


@dataclass(frozen=True)
class PathKeys:
    """The stream keys of a bare path (``open_source(path, **keys)``): every key at its stream default."""

    source: str
    source_type: str = "auto"
    root_folder: str = ""
    masks: str = ""
    label_column: str = ""
    classes: str = ""
    scales: Tuple[float, ...] = ()
    is_color: bool = True
    force_color: bool = False
    force_gray: bool = False
    on_error: str = "raise"


def _path_opener(kind: SourceKind) -> Callable[..., "Source"]:
    def open_path(path: str, **keys: Any) -> "Source":
        unknown = sorted(set(keys) - {f.name for f in fields(PathKeys)} - {"source"})
        if unknown:
            raise TypeError(f"open_source: a {kind.name} source takes the stream keys of PathKeys, not {unknown}")
        return kind.open(replace(PathKeys(path), source_type=kind.name, **keys), Needs())

    return open_path


def register(kind: SourceKind) -> SourceKind:
    """Add ``kind`` to the registry (guessed after the kinds already there; ``open_source`` reaches it
    too); a taken name is an error."""
    if kind.name in KINDS or kind.name == "auto":
        raise ValueError(f"source kind {kind.name!r} is registered already")
    if kind.guess is not None and kind.name not in dict(GUESSES):
        add_kind(kind.name, kind.guess, _path_opener(kind))
    KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind (a test's made-up one, say)."""
    KINDS.pop(name, None)
    if name not in dict(GUESSES):
        remove_kind(name)


def source_types() -> Tuple[str, ...]:
    """The values ``source_type`` takes: "auto" and every registered kind."""
    return ("auto",) + tuple(KINDS)


def kind_of(name: str) -> SourceKind:
    if name not in KINDS:
        raise OptionError("source_type", f"={name!r} must be one of {source_types()}")
    return KINDS[name]


def guess_kind(path: str) -> str:
    """The first kind whose ``guess`` claims ``path`` (the built-in ones first, then the registered ones, as
    :func:`feedstock.loaders.open_source.guess_kind` tries them); ValueError saying what was expected."""
    return guess_path_kind(path)


def kind_name(stream: StreamLike) -> str:
    """The stream's source kind: ``source_type``, else pairs for masks or scales, else guessed from the path."""
    if not stream.source:
        raise OptionError("source", " must name the data to read (a path)")
    if stream.source_type != "auto":
        return stream.source_type
    if stream.masks or stream.scales:
        return "pairs"  # only image + mask pairs have masks and scales
    return guess_kind(stream.source)


def source_of(stream: StreamLike, *, fields: Optional[Sequence[str]] = None, caffe_layout: bool = False,
              class_names: Optional[Sequence[str]] = None, labels: str = "required") -> "Source":
    """The Source a Stream names, opened by its kind (see :class:`Needs` for the keywords)."""
    if labels not in LABELS:
        raise ValueError(f"labels={labels!r} must be one of {LABELS}")
    needs = Needs(tuple(fields) if fields else None, caffe_layout,
                  tuple(class_names) if class_names is not None else None, labels)
    return kind_of(kind_name(stream)).open(stream, needs)


# ----- the built-in kinds --------------------------------------------------------------------------
def _classes(s: StreamLike, needs: Needs) -> Optional[Any]:
    """The class list a source's label codes follow: the caller's (the training set's), else the stream's
    ``classes`` (a list file or a build's labels.txt, read by the loader), else None (its own)."""
    if needs.class_names is not None:
        return list(needs.class_names)
    return s.classes or None


def _lmdb(s: StreamLike, needs: Needs) -> "Source":
    from ..loaders.caffe_lmdb import CaffeLmdb
    from ..loaders.decode import force_mode

    # force_color/force_gray choose how *encoded* Datums decode; Caffe ignores them for raw ones
    return CaffeLmdb(s.source, mode=force_mode(s.force_color, s.force_gray))


def _list(s: StreamLike, needs: Needs) -> "Source":
    from ..loaders.list_file import ListFile

    # classes: the training set's codes, so a file or folder without some class keeps them
    return ListFile(s.source, root=s.root_folder, color=s.is_color, classes=_classes(s, needs))


def _folder(s: StreamLike, needs: Needs) -> "Source":
    from ..loaders.image_folder import ImageFolder

    return ImageFolder(s.source, color=s.is_color, classes=_classes(s, needs))


def _csv(s: StreamLike, needs: Needs) -> "Source":
    import csv

    from ..loaders.csv_table import CsvTable

    kwargs: Dict[str, Any] = {"label_column": s.label_column} if s.label_column else {}
    if needs.labels == "optional":  # prediction data may have no label column (Otto's test.csv)
        with open(s.source, newline="", encoding="utf-8-sig") as f:
            header = [h.strip() for h in next(csv.reader(f), [])]
        column = s.label_column or "target"
        kwargs["label_column"] = column if column in header else None
    classes = _classes(s, needs)
    if classes is not None:
        kwargs["classes"] = classes
    return CsvTable(s.source, caffe_shape=needs.caffe_layout, on_error=s.on_error, **kwargs)


def _hdf5(s: StreamLike, needs: Needs) -> "Source":
    from ..loaders.hdf5 import Hdf5, hdf5_files

    # Caffe's HDF5Data: the dataset names are the layer's top names
    fields = needs.fields or ("data", "label")
    if needs.labels == "optional" and not needs.fields:
        import h5py

        with h5py.File(hdf5_files(s.source)[0], "r") as f:
            fields = ("data", "label") if "label" in f else ("data",)
    return Hdf5(s.source, fields=fields)


def _pairs(s: StreamLike, needs: Needs) -> "Source":
    from ..loaders.pairs_source import pairs_source

    return pairs_source(s)


def _pairs_transforms(s: StreamLike, phase: int, source: Optional["Source"]) -> List["Transform"]:
    from ..transforms.pairs import pairs_transforms

    return pairs_transforms(s, phase, source)  # without a crop, pads to the largest image of source


def _list_folder(src: str, options: Any, exclude: Sequence[str]) -> "Listing":
    from ..writers.build.plan import list_folder

    return list_folder(src, exclude, getattr(options, "classes", None))


def _list_file(src: str, options: Any, exclude: Sequence[str]) -> "Listing":
    from ..writers.build.plan import list_file

    return list_file(src, options.root, getattr(options, "classes", None))


def _list_table(kind: str) -> Lister:
    def lister(src: str, options: Any, exclude: Sequence[str]) -> "Listing":
        from ..writers.build.plan import list_table

        return list_table(src, kind, options)

    return lister


for _kind in (
    SourceKind("lmdb", _lmdb, is_lmdb, images=True),
    SourceKind("folder", _folder, is_class_folder, images=True, listing=_list_folder),
    SourceKind("csv", _csv, is_csv, rows=True, listing=_list_table("csv")),
    SourceKind("hdf5", _hdf5, is_hdf5, transform_param=False, listing=_list_table("hdf5")),
    SourceKind("list", _list, is_list_file, images=True, listing=_list_file),
    SourceKind("pairs", _pairs, None, transforms=_pairs_transforms),
):
    register(_kind)

