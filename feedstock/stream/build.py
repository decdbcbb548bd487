"""A Stream's Source, transforms and Loader: the one place each source kind and transform is chosen."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence

from ..phase import TRAIN
from ..pipeline.options import LoaderOptions
from .check import CAFFE_TRANSFORM_KEYS, StreamKeyError
from .keys import StreamKeys
from .kinds import SourceKind, kind_name, kind_of, source_of

# the loader options a stream sets (the rest, e.g. copy and progress, keep the table's defaults)
STREAM_LOADER_KEYS = ("batch_size", "workers", "shuffle", "drop_last", "prefetch", "on_error", "max_bad_fraction",
                      "timeout", "start_method", "shard")

if TYPE_CHECKING:
    from ..loaders.base import Source
    from ..pipeline.loader import Loader
    from ..transforms.base import Transform


def build_transforms(s: StreamKeys, kind: str, phase: int, source: Optional["Source"] = None) -> List["Transform"]:
    """ImageData's resize, then Caffe's DataTransformer, then range mapping and occlusion (TRAIN)."""
    k = kind_of(kind)
    _refuse_misplaced(s, k)
    if not k.transform_param or (k.transforms is None and not transform_keys_set(s) and not s.new_height):
        # records as stored: Caffe's transformer with no settings only casts to float, which the
        # consumer does on its side (a Caffe top, the trainer's device copy): 4x fewer bytes here
        return []
    from ..transforms import CaffeTransform, Occlude, Resize, Scale

    out: List[Transform]
    if k.transforms is not None:
        out = k.transforms(s, phase, source)
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


def transform_keys_set(s: StreamKeys) -> List[str]:
    """The Caffe transform keys (and occlusion, range) set to something other than their default."""
    changed = s.changed()
    return [k for k in CAFFE_TRANSFORM_KEYS + ("occlude", "to_range") if k in changed]


def _refuse_misplaced(s: StreamKeys, k: SourceKind) -> None:
    if s.new_height and not k.images:
        raise StreamKeyError("new_height", f": new_height/new_width resize images; source {s.source!r} is {k.name}")
    if not k.transform_param:
        changed = transform_keys_set(s)
        if changed:
            raise StreamKeyError(changed[0], f": {k.name.upper()} sources take no transform_param keys (Caffe's "
                                             f"HDF5Data refuses them too); set: {changed}")


def build_loader(s: StreamKeys, phase: int, *, fields: Optional[Sequence[str]] = None, caffe_layout: bool = False,
                 source: Optional["Source"] = None, **overrides: Any) -> "Loader":
    """The Loader of ``s`` in ``phase``, with ``overrides`` replacing loader options; ``source``: read
    this Source (a held-out split of the stream's, say) instead of building one."""
    from ..pipeline.loader import Loader

    kind = kind_name(s)
    options = loader_options(s).replace(**{k: v for k, v in overrides.items() if k not in ("engine", "address")})
    engine, address = overrides.get("engine", s.engine), overrides.get("address", s.address)
    if source is None:
        # Caffe's transformer works on (C, H, W) blobs: CSV rows become (F, 1, 1) when it runs
        caffe_layout = caffe_layout or (kind_of(kind).rows and bool(transform_keys_set(s)))
        source = source_of(s, fields=fields, caffe_layout=caffe_layout)
        if s.decode_scale == "auto" and s.new_height and hasattr(source, "decode_target"):
            source.decode_target = (s.new_height, s.new_width)  # reduced JPEG decode, then Resize
    if engine == "ray":
        from ..engines import RayLoader

        return RayLoader(source, build_transforms(s, kind, phase, source), address=address,  # type: ignore[return-value]
                         **options.as_kwargs())
    return Loader.from_options(source, build_transforms(s, kind, phase, source), options)


def loader_options(s: StreamKeys) -> LoaderOptions:
    """The loader options of ``s`` (an unset seed resolved to fresh entropy, once)."""
    return LoaderOptions.from_kwargs(**{k: getattr(s, k) for k in STREAM_LOADER_KEYS}, seed=resolve_seed(s.seed))


def resolve_seed(seed: Optional[int]) -> int:
    """An unset seed becomes fresh OS entropy (like Caffe's /dev/urandom seeding); saved states keep it."""
    import numpy as np

    if seed is not None:
        return seed
    return int(np.random.SeedSequence().entropy) % 2**63  # type: ignore[arg-type]  # an int when unseeded
