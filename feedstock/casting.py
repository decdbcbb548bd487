"""The one rule for writing a record's values into a batch row of a fixed dtype: never change a value silently.

Allowed: the same dtype; a safe cast (uint8 into float32, int32 into int64);
a float into a narrower float (rounding, as any float32 pipeline does, but no
overflow to infinity); integers into a narrower integer type, or into a float,
when every value is held exactly. Anything else (a float into integers, a
negative into unsigned, a value that overflows) is a ValueError naming the field
and both dtypes; the pipeline adds the record's key.
"""
from __future__ import annotations

import functools
from typing import Mapping, Tuple

import numpy as np

from .errors import SHAPE_FIXES, ShapeError


def cast_problem(value: np.ndarray, dtype: np.dtype) -> str:
    """Why ``value`` cannot be written into an array of ``dtype`` without changing it ("" when it can)."""
    src = value.dtype
    if src == dtype:
        return ""
    if src.kind in "iu" and dtype.kind == "f":  # numpy calls int64 -> float64 safe: it is not for big values
        return _int_into_float(value, dtype)
    if np.can_cast(src, dtype, "safe"):
        return ""
    if src.kind == "f" and dtype.kind == "f":
        finite = value[np.isfinite(value)]
        if finite.size and float(np.abs(finite).max()) > float(np.finfo(dtype).max):
            return f"values up to {float(np.abs(finite).max()):g} overflow {dtype}"
        return ""
    if src.kind in "iu" and dtype.kind in "iu":
        if value.size == 0:
            return ""
        info = np.iinfo(dtype)
        lo, hi = int(value.min()), int(value.max())
        if info.min <= lo and hi <= info.max:
            return ""
        return f"values {lo}..{hi} do not fit {dtype} [{info.min}, {info.max}]"
    return f"a {src} value cannot be stored as {dtype} without changing it"


@functools.lru_cache(maxsize=None)
def _exact_bound(src: np.dtype, dtype: np.dtype) -> Tuple[int, bool]:
    """The largest integer ``dtype`` holds exactly, and whether every ``src`` integer is within it
    (cached: asked per row, and finfo/iinfo cost more than a small row's copy)."""
    exact = 2 ** (np.finfo(dtype).nmant + 1)
    info = np.iinfo(src)
    return exact, -exact <= info.min and info.max <= exact


def _int_into_float(value: np.ndarray, dtype: np.dtype) -> str:
    """Integers a float holds exactly (labels as float32, say); uint8 and int16 always are."""
    exact, always = _exact_bound(value.dtype, dtype)
    if always or value.size == 0:
        return ""
    # one label per record is the common case: item() costs far less than min() and max()
    if value.size == 1:
        lo = hi = int(value.item())
    else:
        lo, hi = int(value.min()), int(value.max())
    if -exact <= lo and hi <= exact:
        return ""
    return f"values {lo}..{hi} are not all exact in {dtype} (integers up to 2**{exact.bit_length() - 1})"


def copy_checked(name: str, dst: np.ndarray, value: np.ndarray) -> None:
    """``dst[...] = value`` when shapes are equal and no value changes; ValueError naming ``name`` otherwise."""
    value = np.asarray(value)
    if value.shape != dst.shape:
        raise ShapeError(f"field {name!r} has shape {value.shape}, the batch expects {dst.shape}", SHAPE_FIXES)
    if value.dtype.kind == "f" and dst.dtype.kind == "f":
        # float into float: only overflow to infinity changes a value, and the cast itself reports
        # it (scanning every row for it first cost ~50x the copy of a float64 image)
        try:
            with np.errstate(over="raise"):
                np.copyto(dst, value, casting="unsafe")
            return
        except FloatingPointError:
            problem = cast_problem(value, dst.dtype)  # names the values
    else:
        problem = cast_problem(value, dst.dtype)
        if not problem:
            np.copyto(dst, value, casting="unsafe")  # checked: no value changes
            return
    raise ValueError(f"field {name!r} is {value.dtype}, the batch holds {dst.dtype}: {problem}")


def write_fields(fields: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
    """Every field named in ``out`` copied in by :func:`copy_checked`; a missing field is a ValueError."""
    for name, dst in out.items():
        if name not in fields:
            raise ValueError(f"sample has no field {name!r} (fields: {sorted(fields)})")
        copy_checked(name, dst, fields[name])


def cast_rows(value: np.ndarray, dtype: np.dtype) -> Tuple[np.ndarray, int, str]:
    """``value`` (rows along axis 0) cast to ``dtype`` by the same rule, checked with whole-array
    operations (a batch at a time): (result, -1, "") or (partial result, first bad row, why)."""
    dtype = np.dtype(dtype)
    if value.dtype == dtype:
        return value, -1, ""
    if value.dtype.kind == "f" and dtype.kind == "f":
        try:
            with np.errstate(over="raise"):
                return value.astype(dtype), -1, ""
        except FloatingPointError:
            with np.errstate(over="ignore"):
                cast = value.astype(dtype)
            bad = np.isinf(cast) & np.isfinite(value)
    elif value.dtype.kind in "iu" and dtype.kind == "f":
        exact, always = _exact_bound(value.dtype, dtype)
        cast = value.astype(dtype)
        if always or value.size == 0:
            return cast, -1, ""
        bad = (value > exact) | (value < -exact)
    else:
        problem = cast_problem(value, dtype)
        return value.astype(dtype), (0 if problem else -1), problem
    rows = np.flatnonzero(bad.reshape(len(value), -1).any(axis=1)) if value.ndim else np.flatnonzero(bad.reshape(1))
    if not rows.size:
        return cast, -1, ""
    row = int(rows[0])
    return cast, row, cast_problem(np.asarray(value[row]), dtype)
