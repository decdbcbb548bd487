"""The layout of a user dataset's records: their structure and per-field spec, found once, checked on each record.

A record is a dict (str keys, or any hashable keys), a namedtuple, a dataclass, a
tuple or list, or a single value. A value is a numpy array, a numpy scalar, a
Python bool/int/float (as numpy makes them: bool, int64, float64) or a torch
tensor (``.numpy()`` on its CPU copy; torch is never imported here, a tensor is
recognised by its type's module). Fields are flat: a nested dict or list inside a
record, a string or an object array is refused with the field's name.

The pipeline sees ``{name: array}``; names are the dict's keys, the
namedtuple's or dataclass's field names, ``"0", "1", ...`` for a tuple or list, and
``"data"`` for a single value. :meth:`Layout.rebuild` turns a batch back into the
dataset's structure.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np

from ..spec import ArraySpec

SINGLE = "data"  # the field name of a dataset whose records are one array or number
_PY_DTYPES = {bool: np.dtype(np.bool_), int: np.dtype(np.int64), float: np.dtype(np.float64)}


def kind_of(record: object) -> str:
    """dict, namedtuple, dataclass, tuple, list or array (any single value)."""
    if isinstance(record, Mapping):
        return "dict"
    if isinstance(record, tuple) and hasattr(type(record), "_fields"):
        return "namedtuple"
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return "dataclass"
    if isinstance(record, tuple):
        return "tuple"
    if isinstance(record, list):
        return "list"
    return "array"


def is_tensor(value: object) -> bool:
    """A torch tensor, told by its type's module (torch need not be imported to ask)."""
    module = type(value).__module__
    return (module == "torch" or module.startswith("torch.")) and hasattr(value, "numpy")


def as_array(value: Any, name: str) -> np.ndarray:
    """One field's value as a numpy array; TypeError naming the field for anything a batch cannot hold."""
    t = type(value)
    if t is np.ndarray:
        array = value
    elif t in _PY_DTYPES:
        array = np.asarray(value, dtype=_PY_DTYPES[t])
    elif isinstance(value, np.generic):
        array = np.asarray(value)
    elif is_tensor(value):
        try:
            array = value.detach().cpu().numpy()
        except (TypeError, RuntimeError) as exc:  # bfloat16 has no numpy dtype, say
            raise TypeError(f"field {name!r}: a {value.dtype} tensor has no numpy form ({exc}); return float32") from None
    elif isinstance(value, (str, bytes)):
        raise TypeError(f"field {name!r} is a {t.__name__}: batches hold numbers and arrays only; drop the field "
                        "or encode it as numbers")
    elif isinstance(value, (Mapping, list, tuple)):
        raise TypeError(f"field {name!r} is a {t.__name__}: nested records are not supported; return a flat "
                        "record (one array per field, e.g. np.asarray the list)")
    elif isinstance(value, np.ndarray):  # a subclass (np.matrix, a masked array): its plain data
        array = np.asarray(value)
    else:
        raise TypeError(f"field {name!r} is a {t.__module__}.{t.__qualname__}: expected a numpy array, a number "
                        "or a torch tensor")
    if array.dtype.kind in "OUSVM" or array.dtype.hasobject:
        raise TypeError(f"field {name!r} has dtype {array.dtype}: batches hold numeric arrays only")
    return array


def _describe(s: ArraySpec) -> str:
    return f"shape {s.shape} {s.dtype}"


@dataclass(frozen=True)
class Layout:
    """How records are structured and what each field holds; found from record 0 (:meth:`of`)."""

    kind: str
    names: Tuple[str, ...]  # the pipeline's field names, in the record's order
    keys: Tuple[Hashable, ...]  # a dict record's own keys (== names for str keys); else ()
    cls: Optional[type]  # the namedtuple or dataclass type (pickled by reference)
    spec: Dict[str, ArraySpec]
    pytypes: Dict[str, type] = dataclasses.field(default_factory=dict)  # fields that were Python or numpy scalars

    @classmethod
    def of(cls, record: Any) -> "Layout":
        kind = kind_of(record)
        keys: Tuple[Hashable, ...] = ()
        klass: Optional[type] = None
        if kind == "dict":
            keys = tuple(record.keys())
            names = tuple(str(k) for k in keys)
            if len(set(names)) != len(names):
                raise TypeError(f"record 0's keys {list(keys)} name the same field twice once made strings")
        elif kind == "namedtuple":
            klass, names = type(record), tuple(type(record)._fields)
        elif kind == "dataclass":
            klass = type(record)
            names = tuple(f.name for f in dataclasses.fields(record) if f.init)
        elif kind in ("tuple", "list"):
            names = tuple(str(j) for j in range(len(record)))
        else:
            names = (SINGLE,)
        if not names:
            raise TypeError(f"record 0 is an empty {kind}: a record needs at least one field")
        layout = cls(kind, names, keys, klass, {})
        values = layout.values(record, 0)
        layout.spec.update({n: ArraySpec.of(as_array(v, n)) for n, v in zip(names, values)})
        layout.pytypes.update({n: type(v) for n, v in zip(names, values) if type(v) in _PY_DTYPES or isinstance(v, np.generic)})
        return layout

    def values(self, record: Any, index: int) -> Sequence[Any]:
        """The record's raw values in field order; TypeError naming the index if its structure differs."""
        kind, t = self.kind, type(record)
        # exact types first: this runs once per record, and isinstance/is_dataclass cost more than the copy
        if kind == "tuple" or kind == "list":
            if t is tuple or t is list or kind_of(record) in ("tuple", "list"):
                if len(record) != len(self.names):
                    raise TypeError(f"record {index} has {len(record)} fields, record 0 had {len(self.names)}")
                return record
        elif kind == "dict":
            if t is dict or isinstance(record, Mapping):
                if len(record) == len(self.keys):
                    try:
                        return [record[k] for k in self.keys]
                    except KeyError:
                        pass
                raise TypeError(f"record {index} has fields {list(record.keys())}, record 0 had {list(self.keys)}")
        elif kind == "namedtuple" or kind == "dataclass":
            if t is self.cls:
                return tuple(record) if kind == "namedtuple" else [getattr(record, n) for n in self.names]
        elif t is np.ndarray or kind_of(record) == "array":
            return (record,)
        got = t.__name__
        want = self.cls.__name__ if self.cls is not None else self.kind
        raise TypeError(f"record {index} is a {got}, record 0 was a {want}: every record needs the same structure")

    def fields(self, record: Any, index: int) -> Dict[str, np.ndarray]:
        """``{name: array}`` of one record, each checked against record 0's shape and dtype."""
        out = {}
        for (name, shape, dtype, _), value in zip(self.checks, self.values(record, index)):
            array = value if type(value) is np.ndarray else as_array(value, name)
            if array.shape != shape or array.dtype != dtype:
                if array.dtype.hasobject:
                    as_array(array, name)  # names the object dtype
                raise ValueError(f"record {index}: field {name!r} has {_describe(ArraySpec.of(array))}, record 0 "
                                 f"had {_describe(self.spec[name])}: every record needs the same shape and dtype "
                                 "(resize, pad or cast in __getitem__)")
            out[name] = array
        return out

    @property
    def checks(self) -> List[Tuple[str, Tuple[int, ...], np.dtype, Optional[type]]]:
        """(name, shape, dtype, Python type) per field; the type is that of record 0's value when it was a
        Python number (a value of that same type needs no conversion or check), else None."""
        checks = self.__dict__.get("_checks")
        if checks is None:  # computed once (the dataclass is frozen: the cache goes around it)
            checks = [(n, self.spec[n].shape, self.spec[n].dtype, self.pytypes.get(n)) for n in self.names]
            self.__dict__["_checks"] = checks
        return checks

    @property
    def identity(self) -> bool:
        """True when the pipeline's dict batches already are the dataset's structure (a dict with str keys)."""
        return self.kind == "dict" and all(type(k) is str for k in self.keys)

    def rebuild(self, fields: Mapping[str, Any]) -> Any:
        """A batch (or a sample) in the dataset's own structure, from ``{name: value}``."""
        kind = self.kind
        if kind == "dict":
            return fields if self.identity else {k: fields[n] for k, n in zip(self.keys, self.names)}
        ordered: List[object] = [fields[n] for n in self.names]
        if kind == "namedtuple":
            return self.cls(*ordered)  # type: ignore[misc]
        if kind == "dataclass":
            return self.cls(**dict(zip(self.names, ordered)))  # type: ignore[misc]
        if kind == "tuple":
            return tuple(ordered)
        if kind == "list":
            return ordered
        return ordered[0]
