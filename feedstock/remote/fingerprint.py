"""A feed's fingerprint (source identity, transform and sampler settings) and the first setting two differ in.

Servers of one RemoteLoader must serve the same stream, not merely batches of the
same shape: a server with another ``--scale``, mean, crop or source would be
interleaved silently. Each server puts a fingerprint in its ``meta``: the one given
to it (``Stream.fingerprint()``), else one derived from its Loader. The client
compares them key by key and names the first setting that differs.

Paths count by their last component (hosts may mount the data elsewhere), and the
seed is left out (the client sends the seed it wants).
"""
from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Tuple

if TYPE_CHECKING:
    from ..pipeline.loader import Loader

_QUOTED_PATH = re.compile(r"""(['"])([^'"]*/[^'"]*)\1""")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_SETTING = re.compile(r"""(\w+)=((?:\[[^\]]*\]|\([^)]*\)|'[^']*'|"[^"]*"|[^,()\[\]\s])+)""")


def portable_repr(obj: object) -> str:
    """``repr(obj)`` without what differs between equal objects on two hosts: folders, addresses."""
    text = _ADDRESS.sub("", repr(obj))
    return _QUOTED_PATH.sub(lambda m: m.group(1) + os.path.basename(m.group(2).rstrip("/")) + m.group(1), text)


def loader_fingerprint(loader: Loader) -> Dict[str, object]:
    """What decides a Loader's batches, for servers given no fingerprint of their stream."""
    s = loader.sampler
    source = loader.source
    return {"source": portable_repr(source), "source_class": f"{type(source).__module__}.{type(source).__qualname__}",
            "transforms": portable_repr(loader.transforms), "on_error": getattr(loader, "on_error", "raise"),
            "batch_size": s.batch_size, "length": s.length, "shuffle": s.shuffle, "drop_last": s.drop_last,
            "rank": s.rank, "world_size": s.world_size}


def checked(fingerprint: Mapping[str, object]) -> Dict[str, object]:
    """``fingerprint`` as a JSON round trip (what the client will see); ValueError when it is not JSON-able."""
    if not isinstance(fingerprint, Mapping):
        raise ValueError(f"fingerprint must be a mapping (e.g. Stream.fingerprint()), got {type(fingerprint).__name__}")
    try:
        return json.loads(json.dumps(dict(fingerprint), allow_nan=False, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"fingerprint must be JSON-able (str keys; numbers, strings, lists, dicts): {exc}") from None


def first_difference(ours: object, theirs: object, path: str = "") -> Optional[Tuple[str, object, object]]:
    """(setting, our value, their value) of the first difference, keys in sorted order; None if equal."""
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        for key in sorted(set(ours) | set(theirs), key=str):
            found = first_difference(ours.get(key, "<absent>"), theirs.get(key, "<absent>"),
                                     f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if ours == theirs:
        return None
    if isinstance(ours, str) and isinstance(theirs, str):
        return _setting_difference(path, ours, theirs)
    return path, ours, theirs


def _setting_difference(path: str, ours: str, theirs: str) -> Tuple[str, object, object]:
    """Within two reprs of the same shape, the first ``name=value`` that differs (``scale``, say)."""
    a, b = _settings(ours), _settings(theirs)
    same_shape = _SETTING.sub("", ours) == _SETTING.sub("", theirs) and [k for k, _ in a] == [k for k, _ in b]
    if same_shape:
        for (key, x), (_, y) in zip(a, b):
            if x != y:
                return f"{path} {key}" if path else key, x, y
    return path, ours, theirs


def _settings(text: str) -> List[Tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _SETTING.finditer(text)]
