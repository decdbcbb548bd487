"""param_str parsing and validation for the Caffe Python layers (keys mirror Caffe's own layers)."""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import yaml

from .loaders import CaffeLmdb, CsvTable, Hdf5, ImageFolder, ListFile, Source, guess_kind
from .pipeline.loader import Loader
from .transforms import CaffeTransform, Resize, Transform
# Caffe's TransformationParameter fields, copied by name from a prototxt's transform_param.
from .transforms.caffe import PARAMS as TRANSFORM_KEYS

TRAIN, TEST = 0, 1

SOURCE_TYPES = ("auto", "lmdb", "list", "folder", "csv", "hdf5")
IMAGE_SOURCES = ("lmdb", "list", "folder")


@dataclass(frozen=True)
class DataLayerParams:
    """Validated configuration of :class:`feedstock.caffe_layer.DataLayer`."""

    source: str
    batch_size: int
    source_type: str = "auto"
    backend: str = "LMDB"
    root_folder: str = ""
    shuffle: bool = False
    new_height: int = 0
    new_width: int = 0
    is_color: bool = True
    scale: float = 1.0
    mirror: bool = False
    crop_size: int = 0
    mean_file: Optional[str] = None
    mean_value: Tuple[float, ...] = ()
    force_color: bool = False
    force_gray: bool = False
    workers: int = 2
    prefetch: int = 4
    seed: Optional[int] = None
    on_error: str = "raise"
    max_bad_fraction: float = 0.01
    tops: Optional[Tuple[str, ...]] = None
    state_file: Optional[str] = None
    rank: int = 0
    world_size: int = 1
    start_method: str = "auto"
    remote: Optional[Tuple[str, ...]] = None  # `feedstock serve` endpoints: they read and transform
    curve_server_key: Optional[str] = None
    curve_keys: Optional[str] = None

    def __post_init__(self) -> None:
        _check_types(self)
        _check_values(self)

    def transform_param(self) -> Dict[str, Any]:
        """The transform_param subset, with Caffe's unset fields left out."""
        out: Dict[str, Any] = {k: getattr(self, k) for k in TRANSFORM_KEYS}
        if self.mean_file is None:
            del out["mean_file"]
        if not self.mean_value:
            del out["mean_value"]
        return out

    def has_transform(self) -> bool:
        """True when any transform_param key differs from Caffe's default."""
        defaults = DataLayerParams(source=self.source, batch_size=1)
        return any(getattr(self, k) != getattr(defaults, k) for k in TRANSFORM_KEYS)


_INT_KEYS = ("batch_size", "new_height", "new_width", "crop_size", "workers", "prefetch", "rank", "world_size")
_BOOL_KEYS = ("shuffle", "is_color", "mirror", "force_color", "force_gray")
_STR_KEYS = ("source", "source_type", "backend", "root_folder", "on_error", "start_method")
_OPT_STR_KEYS = ("mean_file", "state_file", "curve_server_key", "curve_keys")
# what a remote feed's servers decide: set on `feedstock serve`, not in the layer
_SERVER_KEYS = ("source_type", "root_folder", "shuffle", "new_height", "new_width", "is_color", "workers",
                "on_error", "max_bad_fraction", "rank", "world_size", "start_method") + TRANSFORM_KEYS


def _check_types(p: DataLayerParams) -> None:
    for k in _INT_KEYS:
        _expect(k, getattr(p, k), int)
    for k in _BOOL_KEYS:
        _expect(k, getattr(p, k), bool)
    for k in _STR_KEYS:
        _expect(k, getattr(p, k), str)
    for k in _OPT_STR_KEYS:
        if getattr(p, k) is not None:
            _expect(k, getattr(p, k), str)
    if p.seed is not None:
        _expect("seed", p.seed, int)
    for k in ("scale", "max_bad_fraction"):
        value = getattr(p, k)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"param_str key {k!r} must be a number, got {value!r}")
        object.__setattr__(p, k, float(value))
    object.__setattr__(p, "mean_value", _as_floats("mean_value", p.mean_value))
    if p.tops is not None:
        object.__setattr__(p, "tops", _as_names("tops", p.tops))
    if p.remote is not None:
        object.__setattr__(p, "remote", _as_names("remote", p.remote))


def _expect(key: str, value: Any, kind: type) -> None:
    # bool is an int subclass: 'batch_size': True must not pass as 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"param_str key {key!r} must be {kind.__name__}, got {value!r}")


def _as_floats(key: str, value: Any) -> Tuple[float, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"param_str key {key!r} must be a number or a list of numbers, got {value!r}")
    return tuple(float(v) for v in values)


def _as_names(key: str, value: Any) -> Tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"param_str key {key!r} must be a non-empty list of field names, got {value!r}")
    return tuple(values)


def _check_values(p: DataLayerParams) -> None:
    if p.remote:
        _check_remote(p)
    elif not p.source:
        raise ValueError("param_str key 'source' must not be empty")
    _positive("batch_size", p.batch_size, 1)
    _positive("prefetch", p.prefetch, 1)
    _positive("world_size", p.world_size, 1)
    for k in ("new_height", "new_width", "crop_size", "workers", "rank"):
        _positive(k, getattr(p, k), 0)
    if not p.rank < p.world_size:
        raise ValueError(f"param_str key 'rank'={p.rank} must be below world_size={p.world_size}")
    if p.source_type not in SOURCE_TYPES:
        raise ValueError(f"param_str key 'source_type'={p.source_type!r} must be one of {SOURCE_TYPES}")
    if p.backend.upper() != "LMDB":
        raise ValueError(f"param_str key 'backend'={p.backend!r}: only LMDB is supported (LEVELDB is not)")
    if (p.new_height > 0) != (p.new_width > 0):
        raise ValueError(
            f"new_height={p.new_height} and new_width={p.new_width} must be set together (as Caffe requires)"
        )
    if p.force_color and p.force_gray:
        raise ValueError("force_color and force_gray are mutually exclusive")
    if p.mean_file is not None and p.mean_value:
        raise ValueError("mean_file and mean_value are mutually exclusive (as in Caffe)")
    if not 0.0 <= p.max_bad_fraction <= 1.0:
        raise ValueError(f"param_str key 'max_bad_fraction'={p.max_bad_fraction} must be in [0, 1]")
    if p.seed is not None and not 0 <= p.seed < 2**63:
        raise ValueError(f"param_str key 'seed'={p.seed} must be in [0, 2**63)")


def _check_remote(p: DataLayerParams) -> None:
    defaults = DataLayerParams(source="-", batch_size=1)
    server_side = (["source"] if p.source else []) + [
        k for k in _SERVER_KEYS if getattr(p, k) != getattr(defaults, k)]
    if server_side:
        raise ValueError(f"param_str keys {server_side} are the servers' settings with 'remote' "
                         "(give them to `feedstock serve`); the layer keeps batch_size, prefetch, seed, tops")


def _positive(key: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"param_str key {key!r}={value} must be >= {minimum}")


def parse_param_str(text: str) -> Dict[str, Any]:
    """A dict from a Python dict literal, JSON or YAML; never evaluates code."""
    if text is None or not str(text).strip():
        return {}
    text = str(text)
    _refuse_code(text)
    for parse in (ast.literal_eval, json.loads, yaml.safe_load):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, yaml.YAMLError):
            continue
        if isinstance(value, dict):
            return value
        raise ValueError(f"param_str must be a dict (Python literal, JSON or YAML), got {type(value).__name__}: {text!r}")
    raise ValueError(f"param_str is neither a Python dict literal, JSON nor YAML: {text!r}")


def _refuse_code(text: str) -> None:
    """Name the problem when param_str is Python code rather than a literal."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return  # not Python: JSON or YAML may still parse it
    for node in ast.walk(tree):
        # Only calls and lambdas: a YAML flow mapping like {source: a.lmdb} parses as Python too.
        if isinstance(node, (ast.Call, ast.Lambda)):
            raise ValueError(
                f"param_str must be a literal dict; it contains code (a {type(node).__name__}), "
                f"which is never evaluated: {text!r}"
            )


def check_keys(mapping: Mapping[str, Any], valid: Tuple[str, ...], required: Tuple[str, ...], what: str) -> None:
    """Unknown or missing keys raise one error that lists the valid keys."""
    unknown = sorted(str(k) for k in mapping if k not in valid)
    missing = [k for k in required if k not in mapping]
    if unknown or missing:
        parts = ([f"unknown keys {unknown}"] if unknown else []) + ([f"missing keys {missing}"] if missing else [])
        raise ValueError(
            f"{what} param_str: {'; '.join(parts)}; valid keys: {', '.join(valid)} "
            f"(required: {', '.join(required)})"
        )


DATA_KEYS = tuple(f.name for f in fields(DataLayerParams))


def data_layer_params(mapping: Mapping[str, Any]) -> DataLayerParams:
    """Validate a parsed param_str for DataLayer."""
    required = ("batch_size",) if "remote" in mapping else ("source", "batch_size")
    check_keys(mapping, DATA_KEYS, required, "DataLayer")
    return DataLayerParams(**{"source": "", **mapping})


def phase_of(value: Any) -> int:
    """Caffe's phase as 0 (TRAIN) or 1 (TEST); pycaffe sets ``self.phase`` to that int."""
    names = {"TRAIN": TRAIN, "TEST": TEST}
    if isinstance(value, str) and value.upper() in names:
        return names[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value in (TRAIN, TEST):
        return int(value)
    raise ValueError(f"layer phase={value!r} must be 0 (TRAIN) or 1 (TEST); Caffe sets self.phase before setup")


@dataclass(frozen=True)
class OccludeLayerParams:
    """Validated configuration of :class:`feedstock.caffe_layer.OccludeLayer`."""

    seed: Optional[int] = None
    in_test: bool = False

    def __post_init__(self) -> None:
        if self.seed is not None:
            _expect("seed", self.seed, int)
            if not 0 <= self.seed < 2**63:
                raise ValueError(f"param_str key 'seed'={self.seed} must be in [0, 2**63)")
        _expect("in_test", self.in_test, bool)


OCCLUDE_KEYS = tuple(f.name for f in fields(OccludeLayerParams))


def occlude_layer_params(mapping: Mapping[str, Any]) -> OccludeLayerParams:
    """Validate a parsed param_str for OccludeLayer."""
    check_keys(mapping, OCCLUDE_KEYS, (), "OccludeLayer")
    return OccludeLayerParams(**mapping)


def build_source(p: DataLayerParams, kind: str, tops: Tuple[str, ...]) -> Source:
    """The feedstock source reading ``p.source`` as ``kind``."""
    if kind == "lmdb":
        return CaffeLmdb(p.source, mode="color" if p.force_color else "gray" if p.force_gray else "native")
    if kind == "list":
        return ListFile(p.source, root=p.root_folder, color=p.is_color)
    if kind == "folder":
        return ImageFolder(p.source, color=p.is_color)
    if kind == "csv":
        return CsvTable(p.source, caffe_shape=True)
    return Hdf5(p.source, fields=list(tops))  # Caffe's HDF5Data: dataset names are the top names


def build_transforms(p: DataLayerParams, kind: str, phase: int) -> List[Transform]:
    """Resize (ImageData's new_height/new_width) then Caffe's DataTransformer."""
    if p.new_height and kind not in IMAGE_SOURCES:
        raise ValueError(f"new_height/new_width resize images; source {p.source!r} is {kind}")
    if kind == "hdf5":
        if p.has_transform():
            raise ValueError("HDF5 sources take no transform_param keys (Caffe's HDF5Data refuses them too)")
        return []
    out: List[Transform] = [Resize(p.new_height, p.new_width)] if p.new_height else []
    # force_color/force_gray only choose how encoded Datums decode (CaffeLmdb's mode): Caffe ignores
    # them for raw Datums and for ImageData's images (is_color decides there).
    kwargs = {k: v for k, v in p.transform_param().items() if k not in ("force_color", "force_gray")}
    out.append(CaffeTransform(phase="TRAIN" if phase == TRAIN else "TEST", **kwargs))
    return out


def resolve_seed(seed: Optional[int]) -> int:
    """An unset seed becomes fresh OS entropy (like Caffe's /dev/urandom seeding); saved states keep it."""
    return int(np.random.SeedSequence().entropy % 2**63) if seed is None else seed


def build_loader(p: DataLayerParams, phase: int, tops: Tuple[str, ...], *, drop_last: bool = False,
                 part: Tuple[int, int] = (0, 1)) -> Any:
    """The Loader a DataLayer copies from: batches of batch_size, Caffe's transforms, p's pool knobs
    (or, with ``remote``, the RemoteLoader of those servers). ``drop_last``/``part``: see Loader
    (`feedstock serve` sets them; the layer keeps every record)."""
    if p.remote:
        from .remote import RemoteLoader

        return RemoteLoader(p.remote, seed=p.seed, prefetch=max(p.prefetch, 2),
                            curve_server_key=p.curve_server_key, curve_keys=p.curve_keys)
    kind = guess_kind(p.source) if p.source_type == "auto" else p.source_type
    return Loader(
        build_source(p, kind, tops),
        transforms=build_transforms(p, kind, phase),
        batch_size=p.batch_size,
        workers=p.workers,
        shuffle=p.shuffle,
        seed=resolve_seed(p.seed),
        drop_last=drop_last,
        prefetch=p.prefetch,
        on_error=p.on_error,
        max_bad_fraction=p.max_bad_fraction,
        rank=p.rank,
        world_size=p.world_size,
        start_method=p.start_method,
        part=part,
    )
