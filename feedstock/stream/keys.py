"""StreamKeys: the keys of a stream definition and their defaults, validated at construction.

The building (source, transforms, Loader) is :class:`~feedstock.stream.definition.Stream`'s,
a subclass with no keys of its own: the modules that build (:mod:`.build`,
:mod:`.kinds`) read a stream's keys through this class, so none of them imports
the definition it serves. The loader keys' defaults are :class:`LoaderOptions`'.
"""
from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass, fields
from typing import Any, Dict, Optional, Tuple, TypeVar, Union

from ..pipeline.options import DEFAULTS
from ..shard import deprecated
from .check import RULES, check_together

K = TypeVar("K", bound="StreamKeys")


@dataclass(frozen=True)
class StreamKeys:
    """The keys of a stream, each validated at construction (:mod:`.check`); :class:`~.definition.Stream`
    adds the building."""

    # the source
    source: str = ""
    source_type: str = "auto"
    root_folder: str = ""
    masks: str = ""
    label_column: str = ""
    classes: str = ""
    # transforms: Caffe's transform_param, ImageData's resize and colour, augmentations
    scale: float = 1.0
    mirror: bool = False
    crop_size: int = 0
    mean_file: Optional[str] = None
    mean_value: Tuple[float, ...] = ()
    force_color: bool = False
    force_gray: bool = False
    new_height: int = 0
    new_width: int = 0
    decode_scale: Union[str, int] = 1  # "auto": JPEGs decoded at a reduced DCT scale before new_height/width
    is_color: bool = True
    scales: Tuple[float, ...] = ()
    pad_value: float = 0.0
    ignore_label: int = 255
    occlude: bool = False
    to_range: Optional[Tuple[float, float]] = None
    # the loader: LoaderOptions' table, but an unset seed draws fresh entropy at build time (see
    # .build.resolve_seed) and the shard is explicit (0/1), never read from the environment
    batch_size: int = DEFAULTS.batch_size
    shuffle: bool = DEFAULTS.shuffle
    seed: Optional[int] = None
    drop_last: bool = DEFAULTS.drop_last
    workers: Union[int, str] = DEFAULTS.workers
    prefetch: int = DEFAULTS.prefetch
    on_error: str = DEFAULTS.on_error
    max_bad_fraction: float = DEFAULTS.max_bad_fraction
    timeout: Optional[float] = DEFAULTS.timeout
    start_method: str = DEFAULTS.start_method
    shard: Tuple[int, int] = (0, 1)  # i/n: this trainer's share of the samples (feedstock.shard)
    engine: str = "local"  # "ray": Ray actors make the same batches (feedstock.engines)
    address: Optional[str] = None  # engine ray: the cluster to join (None: a local Ray instance)
    # the old spelling of shard: accepted, warned, not stored (not keys: fields() leaves them out)
    rank: InitVar[Optional[int]] = None
    world_size: InitVar[Optional[int]] = None

    def __post_init__(self, rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        if rank is not None or world_size is not None:
            deprecated("the stream keys rank/world_size", "shard: i/n", stacklevel=4)
            i, n = self.shard if isinstance(self.shard, tuple) and len(self.shard) == 2 else (0, 1)
            object.__setattr__(self, "shard", (i if rank is None else rank, n if world_size is None else world_size))
        for f in fields(self):
            object.__setattr__(self, f.name, RULES[f.name](f.name, getattr(self, f.name)))
        check_together(self)

    def replace(self: K, **changes: Any) -> K:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> Dict[str, object]:
        """Plain JSON-able values (tuples as lists): what a snapshot or a YAML file stores."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def changed(self) -> Dict[str, object]:
        """The keys set to something other than their default."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}
