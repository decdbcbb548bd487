"""A Stream's Source, transforms and Loader: the one place each source kind and transform is chosen."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from ..phase import TRAIN
from .check import CAFFE_TRANSFORM_KEYS, StreamKeyError

if TYPE_CHECKING:
    from ..loaders.base import Source
    from ..pipeline.loader import Loader
    from ..transforms.base import Transform
    from .definition import Stream


def build_source(s: "Stream", kind: str, *, fields: Optional[Sequence[str]] = None,
                 caffe_layout: bool = False) -> "Source":
    """The Source of ``s.source`` read as ``kind``."""
    from .. import loaders

    if kind == "lmdb":
        # force_color/force_gray choose how *encoded* Datums decode; Caffe ignores them for raw ones.
        from ..loaders.decode import force_mode

        return loaders.CaffeLmdb(s.source, mode=force_mode(s.force_color, s.force_gray))
    # classes: the training set's codes, so a file or folder without some class keeps them
    classes = s.classes or None
    if kind == "list":
        return loaders.ListFile(s.source, root=s.root_folder, color=s.is_color, classes=classes)
    if kind == "folder":
        return loaders.ImageFolder(s.source, color=s.is_color, classes=classes)
    if kind == "csv":
        kwargs: Dict[str, Any] = {"label_column": s.label_column} if s.label_column else {}
        return loaders.CsvTable(s.source, caffe_shape=caffe_layout, on_error=s.on_error, classes=classes, **kwargs)
    if kind == "hdf5":
        # Caffe's HDF5Data: the dataset names are the layer's top names
        return loaders.Hdf5(s.source, fields=tuple(fields) if fields else ("data", "label"))
    if kind == "pairs":
        from ..loaders.pairs_source import pairs_source

        return pairs_source(s)
    raise StreamKeyError("source_type", f"={kind!r} is not a source type")


def build_transforms(s: "Stream", kind: str, phase: int, source: Optional["Source"] = None) -> List["Transform"]:
    """ImageData's resize, then Caffe's DataTransformer, then range mapping and occlusion (TRAIN)."""
    _refuse_misplaced(s, kind)
    if kind == "hdf5" or (kind != "pairs" and not transform_keys_set(s) and not s.new_height):
        # records as stored: Caffe's transformer with no settings only casts to float, which the
        # consumer does on its side (a Caffe top, the trainer's device copy): 4x fewer bytes here
        return []
    from ..transforms import CaffeTransform, Occlude, Resize, Scale

    out: List[Transform]
    if kind == "pairs":
        from ..transforms.pairs import pairs_transforms

        out = pairs_transforms(s, phase, source)  # without a crop, pads to the largest image of source
    else:
        out = [Resize(s.new_height, s.new_width)] if s.new_height else []
        out.append(CaffeTransform(phase=phase, scale=s.scale, mirror=s.mirror, crop_size=s.crop_size,
                                  mean_file=s.mean_file, mean_value=s.mean_value))
    if s.to_range is not None:
        # [0, 255] onto (lo, hi); after a mean subtraction the values are centred, so the same
        # slope maps [-127.5, 127.5] onto the range (DIGITS: mean image subtracted, then [-1, 1]).
        centred = s.mean_file is not None or bool(s.mean_value)
        out.append(Scale(to_range=s.to_range, from_range=(-127.5, 127.5) if centred else (0, 255)))
    if s.occlude and phase == TRAIN:
        # after scaling, as DIGITS' BlankSquareLayer follows the data layer: zeros are the mean colour
        out.append(Occlude())
    return out


def transform_keys_set(s: "Stream") -> List[str]:
    """The Caffe transform keys (and occlusion, range) set to something other than their default."""
    changed = s.changed()
    return [k for k in CAFFE_TRANSFORM_KEYS + ("occlude", "to_range") if k in changed]


def _refuse_misplaced(s: "Stream", kind: str) -> None:
    if s.new_height and kind not in ("lmdb", "list", "folder"):
        raise StreamKeyError("new_height", f": new_height/new_width resize images; source {s.source!r} is {kind}")
    if kind == "hdf5":
        changed = transform_keys_set(s)
        if changed:
            raise StreamKeyError(changed[0], ": HDF5 sources take no transform_param keys (Caffe's "
                                             f"HDF5Data refuses them too); set: {changed}")


def build_loader(s: "Stream", phase: int, *, fields: Optional[Sequence[str]] = None, caffe_layout: bool = False,
                 source: Optional["Source"] = None, **overrides: Any) -> "Loader":
    """The Loader of ``s`` in ``phase``, with ``overrides`` replacing loader options; ``source``: read
    this Source (a held-out split of the stream's, say) instead of building one."""
    from ..pipeline.loader import Loader

    kind = s.kind()
    options = dict(loader_options(s), **overrides)
    engine, address = options.pop("engine", s.engine), options.pop("address", s.address)
    if source is None:
        # Caffe's transformer works on (C, H, W) blobs: CSV rows become (F, 1, 1) when it runs
        caffe_layout = caffe_layout or (kind == "csv" and bool(transform_keys_set(s)))
        source = build_source(s, kind, fields=fields, caffe_layout=caffe_layout)
        if s.decode_scale == "auto" and s.new_height and hasattr(source, "decode_target"):
            source.decode_target = (s.new_height, s.new_width)  # reduced JPEG decode, then Resize
    if engine == "ray":
        from ..engines import RayLoader

        return RayLoader(source, build_transforms(s, kind, phase, source), address=address,  # type: ignore[return-value]
                         **options)
    return Loader(source, build_transforms(s, kind, phase, source), **options)


def loader_options(s: "Stream") -> Dict[str, Any]:
    """The Loader keyword arguments of ``s`` (an unset seed resolved to fresh entropy, once)."""
    return dict(batch_size=s.batch_size, workers=s.workers, shuffle=s.shuffle, seed=resolve_seed(s.seed),
                drop_last=s.drop_last, prefetch=s.prefetch, on_error=s.on_error,
                max_bad_fraction=s.max_bad_fraction, timeout=s.timeout, start_method=s.start_method,
                rank=s.rank, world_size=s.world_size)


def resolve_seed(seed: Optional[int]) -> int:
    """An unset seed becomes fresh OS entropy (like Caffe's /dev/urandom seeding); saved states keep it."""
    import numpy as np

    if seed is not None:
        return seed
    return int(np.random.SeedSequence().entropy) % 2**63  # type: ignore[arg-type]  # an int when unseeded
