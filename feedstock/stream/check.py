"""Validation of a stream definition's values: one rule per key, errors that name the key and its form."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

from ..pipeline.options import RULES as LOADER_RULES
from ..pipeline.options import START_METHODS as START_METHODS  # re-exported for the parsers
from ..pipeline.options import OptionError, as_bool, as_choice, as_int, as_number, as_shard, echo
from ..pipeline.options import as_seed as loader_seed
from .kinds import source_types

# Caffe's TransformationParameter fields, copied by name from a prototxt's transform_param.
CAFFE_TRANSFORM_KEYS = ("scale", "mirror", "crop_size", "mean_file", "mean_value", "force_color", "force_gray")
# what changes the samples (the remote setup check compares these)
TRANSFORM_KEYS = CAFFE_TRANSFORM_KEYS + ("new_height", "new_width", "decode_scale", "is_color", "scales", "pad_value",
                                         "ignore_label", "occlude", "to_range")
SOURCE_TYPES = source_types()  # the built-in kinds (flags' choices); the rule asks the registry each time

ENGINES = ("local", "ray")  # who makes the batches: worker processes here, or Ray actors (feedstock.engines)

# one error type for a bad key, whether a Stream, a Loader or a RemoteLoader was given it
StreamKeyError = OptionError


def as_seed(key: str, value: object) -> Optional[int]:
    """None (fresh entropy at build time) or a seed by the Loader's rule."""
    return None if value is None else loader_seed(key, value)


def as_str(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise StreamKeyError(key, f" must be str, got {echo(value)}")
    return value


def as_numbers(key: str, value: object) -> Tuple[float, ...]:
    """A number or a list of numbers (``mean_value: 104`` or ``[104, 117, 123]``)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    try:
        return tuple(as_number(key, v) for v in values)
    except StreamKeyError:
        raise StreamKeyError(key, f" must be a number or a list of finite numbers, got {echo(value)}") from None


def as_range(key: str, value: object) -> Optional[Tuple[float, float]]:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise StreamKeyError(key, f" must be a (low, high) pair, got {echo(value)}")
    lo, hi = (as_number(key, v) for v in value)
    if lo == hi:
        raise StreamKeyError(key, f"={echo(value)} must have low != high")
    return lo, hi


def as_scales(key: str, value: object) -> Tuple[float, ...]:
    scales = as_numbers(key, value) if value != () else ()
    if any(s <= 0 for s in scales):
        raise StreamKeyError(key, f"={echo(value)} must be positive factors (e.g. [0.6, 1, 1.4])")
    return scales


def _opt_str(key: str, value: object) -> Optional[str]:
    return None if value is None else as_str(key, value)


def _label(key: str, value: object) -> int:
    number = as_int(key, value, 0)
    if number > 255:
        raise StreamKeyError(key, f"={number} must fit a uint8 mask (0..255)")
    return number


def as_decode_scale(key: str, value: Any) -> Any:
    """"auto" (opt-in reduced JPEG decode before a resize, not Caffe's pixels) or 1 (exact, the default)."""
    if value in ("auto", 1, "1") and value is not True:
        return "auto" if value == "auto" else 1
    raise StreamKeyError(key, f"={echo(value)} must be auto (decode JPEGs at a reduced scale before "
                              "new_height/new_width; faster, not Caffe's pixels) or 1 (exact)")


# key -> normaliser (raises StreamKeyError naming the key)
RULES: Dict[str, Callable[[str, object], object]] = {
    "source": as_str, "source_type": lambda k, v: as_choice(k, v, source_types()), "root_folder": as_str,
    "masks": as_str, "label_column": as_str, "classes": as_str,
    "scale": as_number, "mirror": as_bool, "crop_size": as_int, "mean_file": _opt_str, "mean_value": as_numbers,
    "force_color": as_bool, "force_gray": as_bool, "new_height": as_int, "new_width": as_int, "is_color": as_bool,
    "decode_scale": lambda k, v: as_decode_scale(k, v),
    "scales": as_scales, "pad_value": as_number, "ignore_label": _label, "occlude": as_bool, "to_range": as_range,
    # the loader keys: LoaderOptions' rules, but a stream's seed may be unset and its shard is set
    **{k: LOADER_RULES[k] for k in ("batch_size", "shuffle", "drop_last", "workers", "prefetch", "on_error",
                                    "max_bad_fraction", "timeout", "start_method")},
    "seed": as_seed, "shard": as_shard,
    "engine": lambda k, v: as_choice(k, v, ENGINES), "address": _opt_str,
}


def check_together(s: Any) -> None:
    """Rules between keys (each error names the first key involved)."""
    if (s.new_height > 0) != (s.new_width > 0):
        raise StreamKeyError("new_height", f"={s.new_height} and {{new_width={s.new_width}}} must be set together "
                                           "(as Caffe requires)", template=True)
    if s.address is not None and s.engine != "ray":
        raise StreamKeyError("address", f"={echo(s.address)} is a Ray cluster's: it needs {{engine='ray'}}",
                             template=True)
    if s.force_color and s.force_gray:
        raise StreamKeyError("force_color", " and {force_gray} are mutually exclusive", template=True)
    if s.mean_file is not None and s.mean_value:
        raise StreamKeyError("mean_file", " and {mean_value} are mutually exclusive (as in Caffe)", template=True)
    if s.to_range is not None and s.scale != 1.0:
        raise StreamKeyError("to_range", f"={s.to_range} and {{scale={s.scale}}} are mutually exclusive "
                                         "(to_range sets the scale)", template=True)
    if s.source_type not in ("pairs", "auto") and (s.scales or s.masks):
        key = "scales" if s.scales else "masks"
        raise StreamKeyError(key, " applies to image + mask pairs only ({source_type='pairs'})", template=True)
