"""param_str of the Caffe Python layers: the stream definition's keys plus what is Caffe's own.

A DataLayer's param_str is a :class:`~feedstock.stream.Stream` (source, transform_param
keys, loader options) with the layer's own keys: ``tops``, ``state_file``, ``backend``
(Caffe's DataParameter), and ``remote`` with its CURVE keys.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Mapping, Optional, Tuple

from .phase import TEST, TRAIN, parse_phase
from .stream import STREAM_KEYS, Stream, parse_param_str, stream_from_mapping
from .stream.check import StreamKeyError, as_seed, as_str, echo
from .stream.forms import OLD_KEYS, check_keys

if TYPE_CHECKING:
    from .protocols import BatchLoader

__all__ = ["TRAIN", "TEST", "DataLayerParams", "data_layer_params", "occlude_layer_params", "parse_param_str",
           "parse_phase", "build_loader", "check_keys", "DATA_KEYS", "OCCLUDE_KEYS"]

# what a remote feed's servers decide: a layer with 'remote' keeps only these stream keys
_CLIENT_STREAM_KEYS = ("batch_size", "prefetch", "seed")


@dataclass(frozen=True)
class DataLayerParams:
    """Validated configuration of :class:`feedstock.caffe_layer.DataLayer`: its stream and Caffe's keys."""

    stream: Stream
    tops: Optional[Tuple[str, ...]] = None
    state_file: Optional[str] = None
    backend: str = "LMDB"
    remote: Optional[Tuple[str, ...]] = None  # `feedstock serve` endpoints: they read and transform
    curve_server_key: Optional[str] = None
    curve_keys: Optional[str] = None

    def __post_init__(self) -> None:
        try:
            for key in ("state_file", "curve_server_key", "curve_keys"):
                if getattr(self, key) is not None:
                    as_str(key, getattr(self, key))
            as_str("backend", self.backend)
        except StreamKeyError as e:
            raise ValueError(f"param_str key {e}") from None
        if self.backend.upper() != "LMDB":
            raise ValueError(f"param_str key 'backend'={echo(self.backend)}: only LMDB is supported (LEVELDB is not)")
        if self.tops is not None:
            object.__setattr__(self, "tops", _as_names("tops", self.tops))
        if self.remote is not None:
            object.__setattr__(self, "remote", _as_names("remote", self.remote))
            _check_remote(self.stream)
        elif not self.stream.source:
            raise ValueError("param_str key 'source' must not be empty")

    @property
    def batch_size(self) -> int:
        return self.stream.batch_size


LAYER_KEYS = tuple(f.name for f in fields(DataLayerParams) if f.name != "stream")
DATA_KEYS = STREAM_KEYS + LAYER_KEYS


def _as_names(key: str, value: object) -> Tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"param_str key {key!r} must be a non-empty list of names, got {echo(value)}")
    return tuple(values)


def _check_remote(stream: Stream) -> None:
    server_side = [k for k in stream.changed() if k not in _CLIENT_STREAM_KEYS]
    if server_side:
        raise ValueError(f"param_str keys {server_side} are the servers' settings with 'remote' "
                         "(give them to `feedstock serve`); the layer keeps batch_size, prefetch, seed, tops")


def data_layer_params(mapping: Mapping[str, Any]) -> DataLayerParams:
    """Validate a parsed param_str for DataLayer."""
    required = ("batch_size",) if "remote" in mapping else ("source", "batch_size")
    check_keys({k: v for k, v in mapping.items() if k not in OLD_KEYS}, DATA_KEYS, required, "DataLayer param_str")
    layer = {k: v for k, v in mapping.items() if k in LAYER_KEYS}
    stream = stream_from_mapping({k: v for k, v in mapping.items() if k in STREAM_KEYS + OLD_KEYS}, form="param_str")
    return DataLayerParams(stream=stream, **layer)


def build_loader(p: DataLayerParams, phase: int, tops: Tuple[str, ...]) -> "BatchLoader":
    """The Loader a DataLayer copies from (or, with ``remote``, the RemoteLoader of those servers):
    every record, in Caffe's layouts (CSV rows as (F, 1, 1); HDF5 datasets named by the tops)."""
    if p.remote:
        from .remote import RemoteLoader

        s = p.stream
        return RemoteLoader(p.remote, seed=s.seed, prefetch=max(s.prefetch, 2),
                            curve_server_key=p.curve_server_key, curve_keys=p.curve_keys)
    return p.stream.build_loader(phase, fields=tops, caffe_layout=True)


@dataclass(frozen=True)
class OccludeLayerParams:
    """Validated configuration of :class:`feedstock.caffe_layer.OccludeLayer`."""

    seed: Optional[int] = None
    in_test: bool = False

    def __post_init__(self) -> None:
        try:
            as_seed("seed", self.seed)
        except StreamKeyError as e:
            raise ValueError(f"param_str key {e}") from None
        if not isinstance(self.in_test, bool):
            raise ValueError(f"param_str key 'in_test' must be bool, got {echo(self.in_test)}")


OCCLUDE_KEYS = tuple(f.name for f in fields(OccludeLayerParams))


def occlude_layer_params(mapping: Mapping[str, Any]) -> OccludeLayerParams:
    """Validate a parsed param_str for OccludeLayer."""
    check_keys(mapping, OCCLUDE_KEYS, (), "OccludeLayer param_str")
    return OccludeLayerParams(**mapping)

