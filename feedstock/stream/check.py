"""Validation of a stream definition's values: one rule per key, errors that name the key and its form."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

from ..errors import Spell, spell
from ..rng import check_seed

# Caffe's TransformationParameter fields, copied by name from a prototxt's transform_param.
CAFFE_TRANSFORM_KEYS = ("scale", "mirror", "crop_size", "mean_file", "mean_value", "force_color", "force_gray")
# what changes the samples (the remote setup check compares these)
TRANSFORM_KEYS = CAFFE_TRANSFORM_KEYS + ("new_height", "new_width", "decode_scale", "is_color", "scales", "pad_value",
                                         "ignore_label", "occlude", "to_range")
SOURCE_TYPES = ("auto", "lmdb", "list", "folder", "csv", "hdf5", "pairs")
START_METHODS = ("auto", "fork", "spawn", "forkserver")
ON_ERROR = ("raise", "skip")
ENGINES = ("local", "ray")  # who makes the batches: worker processes here, or Ray actors (feedstock.engines)
_ECHO = 120  # a bad value is echoed cut to this many characters (a param_str may hold 200 KB)


class StreamKeyError(ValueError):
    """A bad value of one key; ``detail`` reads after the key's name (``=0 must be >= 1``). A ``template``
    detail names other keys as ``{key=value}`` (:mod:`feedstock.errors`): each form spells them its way."""

    def __init__(self, key: str, detail: str, *, template: bool = False) -> None:
        super().__init__(f"{key!r}{spell(detail) if template else detail}")
        self.key, self.detail, self.template = key, detail, template

    def spelled(self, spelling: Spell) -> str:
        """``detail`` with the other keys it names written by ``spelling``."""
        return spell(self.detail, spelling) if self.template else self.detail


def echo(value: Any) -> str:
    """``repr(value)``, cut so an error never repeats a huge input."""
    text = repr(value)
    return text if len(text) <= _ECHO else f"{text[:_ECHO]}... ({len(text)} characters)"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True must not pass as 1


def as_int(key: str, value: Any, minimum: int = 0) -> int:
    if not is_int(value):
        raise StreamKeyError(key, f" must be int, got {echo(value)}")
    if value < minimum:
        raise StreamKeyError(key, f"={value} must be >= {minimum}")
    return int(value)


def as_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise StreamKeyError(key, f" must be bool (true/false), got {echo(value)}")
    return value


def as_str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise StreamKeyError(key, f" must be str, got {echo(value)}")
    return value


def as_number(key: str, value: Any) -> float:
    """A finite number: NaN and infinities (JSON's NaN/Infinity, YAML's .nan/.inf) are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StreamKeyError(key, f" must be a number, got {echo(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise StreamKeyError(key, f" must be a finite number, got {echo(value)}")
    return number


def as_numbers(key: str, value: Any) -> Tuple[float, ...]:
    """A number or a list of numbers (``mean_value: 104`` or ``[104, 117, 123]``)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    try:
        return tuple(as_number(key, v) for v in values)
    except StreamKeyError:
        raise StreamKeyError(key, f" must be a number or a list of finite numbers, got {echo(value)}") from None


def as_choice(key: str, value: Any, choices: Tuple[str, ...]) -> str:
    if value not in choices:
        raise StreamKeyError(key, f"={echo(value)} must be one of {choices}")
    return value


def as_seed(key: str, value: Any) -> Optional[int]:
    """None (fresh entropy at build time) or a seed by the one rule of :func:`feedstock.rng.check_seed`."""
    if value is None:
        return None
    if not is_int(value):
        raise StreamKeyError(key, f" must be int, got {echo(value)}")
    try:
        return check_seed(value, name=key)
    except ValueError as e:
        raise StreamKeyError(key, "=" + str(e).split("=", 1)[1]) from None


def as_workers(key: str, value: Any) -> Any:
    if value == "auto":
        return "auto"
    if not is_int(value):
        raise StreamKeyError(key, f" must be an int >= 0 or 'auto', got {echo(value)}")
    return as_int(key, value, 0)


def as_timeout(key: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    number = as_number(key, value)
    if number <= 0:
        raise StreamKeyError(key, f"={number} must be positive seconds (or null: wait forever)")
    return number


def as_range(key: str, value: Any) -> Optional[Tuple[float, float]]:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise StreamKeyError(key, f" must be a (low, high) pair, got {echo(value)}")
    lo, hi = (as_number(key, v) for v in value)
    if lo == hi:
        raise StreamKeyError(key, f"={echo(value)} must have low != high")
    return lo, hi


def as_scales(key: str, value: Any) -> Tuple[float, ...]:
    scales = as_numbers(key, value) if value != () else ()
    if any(s <= 0 for s in scales):
        raise StreamKeyError(key, f"={echo(value)} must be positive factors (e.g. [0.6, 1, 1.4])")
    return scales


def _opt_str(key: str, value: Any) -> Optional[str]:
    return None if value is None else as_str(key, value)


def _positive(key: str, value: Any) -> int:
    return as_int(key, value, 1)


def _fraction(key: str, value: Any) -> float:
    number = as_number(key, value)
    if not 0.0 <= number <= 1.0:
        raise StreamKeyError(key, f"={number} must be in [0, 1]")
    return number


def _label(key: str, value: Any) -> int:
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
RULES: Dict[str, Callable[[str, Any], Any]] = {
    "source": as_str, "source_type": lambda k, v: as_choice(k, v, SOURCE_TYPES), "root_folder": as_str,
    "masks": as_str, "label_column": as_str, "classes": as_str,
    "scale": as_number, "mirror": as_bool, "crop_size": as_int, "mean_file": _opt_str, "mean_value": as_numbers,
    "force_color": as_bool, "force_gray": as_bool, "new_height": as_int, "new_width": as_int, "is_color": as_bool,
    "decode_scale": lambda k, v: as_decode_scale(k, v),
    "scales": as_scales, "pad_value": as_number, "ignore_label": _label, "occlude": as_bool, "to_range": as_range,
    "batch_size": _positive, "shuffle": as_bool, "seed": as_seed, "drop_last": as_bool, "workers": as_workers,
    "prefetch": _positive, "on_error": lambda k, v: as_choice(k, v, ON_ERROR), "max_bad_fraction": _fraction,
    "timeout": as_timeout, "start_method": lambda k, v: as_choice(k, v, START_METHODS), "rank": as_int,
    "world_size": _positive, "engine": lambda k, v: as_choice(k, v, ENGINES), "address": _opt_str,
}


def check_together(s: Any) -> None:
    """Rules between keys (each error names the first key involved)."""
    if not s.rank < s.world_size:
        raise StreamKeyError("rank", f"={s.rank} must be below {{world_size={s.world_size}}}", template=True)
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
