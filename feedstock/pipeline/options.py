"""LoaderOptions: the one table of loader defaults and the one validator, shared by every engine.

The local :class:`~feedstock.pipeline.loader.Loader`, the
:class:`~feedstock.remote.client.RemoteLoader`, the stream definition
(:class:`~feedstock.stream.Stream`, whose loader keys default to this table) and
any other engine take the same options with the same meaning, checked by the same
rules: a bad value raises :class:`OptionError` (a ValueError) naming the key.

The defaults are the stream's documented ones (docs/stream.md): 2 workers, no
shuffle, no drop_last. One difference by design: a library user who gives no seed
gets seed 0 (reproducible batches), where a Stream with no seed draws fresh OS
entropy once at build time, as Caffe seeds from /dev/urandom. ``shard=(i, n)``
(:mod:`feedstock.shard`: this trainer's share of the samples) left None is read from
torchrun's ``RANK``/``WORLD_SIZE``; the old ``rank``/``world_size`` keywords of
:meth:`LoaderOptions.from_kwargs` still work, warned.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, Optional, Tuple, TypeGuard, Union

import numpy as np

from ..errors import Spell, spell
from ..rng import check_seed
from ..shard import check_shard, shard_of

ON_ERROR = ("raise", "skip")
START_METHODS = ("auto", "fork", "spawn", "forkserver")
_ECHO = 120  # a bad value is echoed cut to this many characters (a param_str may hold 200 KB)


class OptionError(ValueError):
    """A bad value of one key; ``detail`` reads after the key's name (``=0 must be >= 1``). A ``template``
    detail names other keys as ``{key=value}`` (:mod:`feedstock.errors`): each form spells them its way."""

    def __init__(self, key: str, detail: str, *, template: bool = False) -> None:
        super().__init__(f"{key!r}{spell(detail) if template else detail}")
        self.key, self.detail, self.template = key, detail, template

    def spelled(self, spelling: Spell) -> str:
        """``detail`` with the other keys it names written by ``spelling``."""
        return spell(self.detail, spelling) if self.template else self.detail


def echo(value: object) -> str:
    """``repr(value)``, cut so an error never repeats a huge input."""
    text = repr(value)
    return text if len(text) <= _ECHO else f"{text[:_ECHO]}... ({len(text)} characters)"


def is_int(value: object) -> TypeGuard[Union[int, np.integer]]:
    """A Python or numpy integer; True must not pass as 1."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_int(key: str, value: object, minimum: int = 0) -> int:
    if not is_int(value):
        raise OptionError(key, f" must be int, got {echo(value)}")
    number = int(value)
    if number < minimum:
        raise OptionError(key, f"={number} must be >= {minimum}")
    return number


def as_bool(key: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise OptionError(key, f" must be bool (true/false), got {echo(value)}")
    return bool(value)


def as_number(key: str, value: object) -> float:
    """A finite number: NaN and infinities (JSON's NaN/Infinity, YAML's .nan/.inf) are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise OptionError(key, f" must be a number, got {echo(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise OptionError(key, f" must be a finite number, got {echo(value)}")
    return number


def as_choice(key: str, value: object, choices: Tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise OptionError(key, f"={echo(value)} must be one of {choices}")
    return value


def as_seed(key: str, value: object) -> int:
    """A seed by the one rule of :func:`feedstock.rng.check_seed`."""
    if not is_int(value):
        raise OptionError(key, f" must be int, got {echo(value)}")
    try:
        return check_seed(value, name=key)
    except ValueError as e:
        raise OptionError(key, "=" + str(e).split("=", 1)[1]) from None


def as_workers(key: str, value: object) -> Union[int, str]:
    if value == "auto":
        return "auto"
    if not is_int(value):
        raise OptionError(key, f" must be an int >= 0 or 'auto', got {echo(value)}")
    return as_int(key, value, 0)


def as_timeout(key: str, value: object) -> Optional[float]:
    if value is None:
        return None
    number = as_number(key, value)
    if number <= 0:
        raise OptionError(key, f"={number} must be positive seconds (or null: wait forever)")
    return number


def as_positive(key: str, value: object) -> int:
    return as_int(key, value, 1)


def as_shard(key: str, value: object) -> Tuple[int, int]:
    """``(i, n)`` from a pair or ``"i/n"``: the i-th of n shares (:mod:`feedstock.shard`)."""
    try:
        return check_shard(value, key)
    except ValueError as e:
        raise OptionError(key, str(e).split(key, 1)[1] if key in str(e) else f"={echo(value)} must be i/n") from None


def as_fraction(key: str, value: object) -> float:
    number = as_number(key, value)
    if not 0.0 <= number <= 1.0:
        raise OptionError(key, f"={number} must be in [0, 1]")
    return number


def _opt(rule: Callable[[str, object], object]) -> Callable[[str, object], object]:
    return lambda key, value: None if value is None else rule(key, value)


@dataclass(frozen=True)
class LoaderOptions:
    """How batches are made from a source: the defaults and rules of every engine (see the module doc)."""

    batch_size: int = 64
    workers: Union[int, str] = 2
    shuffle: bool = False
    seed: int = 0
    drop_last: bool = False
    prefetch: int = 4
    on_error: str = "raise"
    max_bad_fraction: float = 0.01
    timeout: Optional[float] = 120.0
    start_method: str = "auto"
    shard: Optional[Tuple[int, int]] = None
    replace_dead_workers: bool = True
    copy: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, RULES[f.name](f.name, getattr(self, f.name)))

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "LoaderOptions":
        """The options named in ``kwargs``, the table's defaults for the rest; TypeError naming unknown keys."""
        if "rank" in kwargs or "world_size" in kwargs:  # the old spelling of shard
            kwargs["shard"] = shard_of(kwargs.get("shard"), kwargs.pop("rank", None), kwargs.pop("world_size", None),
                                       where="LoaderOptions: ")
        unknown = sorted(set(kwargs) - set(OPTION_KEYS))
        if unknown:
            raise TypeError(f"unknown loader options {unknown}; the options are {list(OPTION_KEYS)}")
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "LoaderOptions":
        return dataclasses.replace(self, **changes)

    def as_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for :class:`~feedstock.pipeline.loader.Loader` (every option)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# key -> normaliser (raises OptionError naming the key); the stream's loader keys use the same rules
RULES: Dict[str, Callable[[str, object], object]] = {
    "batch_size": as_positive, "workers": as_workers, "shuffle": as_bool, "seed": as_seed,
    "drop_last": as_bool, "prefetch": as_positive, "on_error": lambda k, v: as_choice(k, v, ON_ERROR),
    "max_bad_fraction": as_fraction, "timeout": as_timeout,
    "start_method": lambda k, v: as_choice(k, v, START_METHODS), "shard": _opt(as_shard),
    "replace_dead_workers": as_bool, "copy": as_bool, "progress": as_bool,
}
OPTION_KEYS = tuple(f.name for f in fields(LoaderOptions))
DEFAULTS = LoaderOptions()
