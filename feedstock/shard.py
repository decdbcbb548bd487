"""One word for a share of the work: a shard ``i/n`` is the i-th of n disjoint shares (0 <= i < n).

What is shared depends on the command, the word does not:

- ``build-lmdb --shard i/n``: the i-th of n contiguous ranges of the listing's records (``merge-lmdb``
  joins them in order);
- the loader option ``shard=(i, n)`` (stream key ``shard``, flag ``--shard i/n``): the samples of
  trainer i of n in data-parallel training (torchrun's ``RANK``/``WORLD_SIZE`` when unset);
- ``serve --batch-shard j/n`` (``Sampler(batch_shard=(j, n))``): server j of n serves batches
  ``j, j+n, ...`` of the epoch, so n servers interleaved give the whole epoch.

The spellings before this word (``rank``/``world_size``, ``part``, ``--rank``/``--world-size``,
``--part``) are still accepted: a keyword warns with a DeprecationWarning (:func:`deprecated`),
a flag with one log line on stderr (:func:`old_flag`). ``feedstock.torch.DataLoader`` keeps
torch's own spellings (a DistributedSampler's ``rank``/``num_replicas``) without a warning.
"""
from __future__ import annotations

import argparse
import logging
import os
import warnings
from typing import Any, Mapping, Optional, Tuple

Shard = Tuple[int, int]
WHOLE: Shard = (0, 1)


def check_shard(value: object, key: str = "shard") -> Shard:
    """``(i, n)`` from a pair or an ``"i/n"`` string, as ints with 0 <= i < n; ValueError naming ``key``."""
    if isinstance(value, str):
        i_text, slash, n_text = value.partition("/")
        parts: object = (i_text.strip(), n_text.strip()) if slash else ()
    else:
        parts = value
    if not isinstance(parts, (tuple, list)) or len(parts) != 2 or any(isinstance(v, (bool, float)) for v in parts):
        raise ValueError(f"{key}={value!r} must be i/n (a pair (i, n)), e.g. 0/2")
    try:
        i, n = int(parts[0]), int(parts[1])
    except (TypeError, ValueError):
        raise ValueError(f"{key}={value!r} must be i/n (a pair (i, n)), e.g. 0/2") from None
    if not 0 <= i < n:
        raise ValueError(f"{key}={i}/{n} must have 0 <= i < n (the i-th of n shares)")
    return i, n


def env_shard(env: Mapping[str, str] = os.environ) -> Shard:
    """torchrun's ``RANK``/``WORLD_SIZE`` as a shard; 0/1 outside torchrun."""
    n = int(env.get("WORLD_SIZE", "1"))
    i = int(env.get("RANK", "0")) if n > 1 else 0
    return check_shard((i, n), "RANK/WORLD_SIZE")


def shard_text(shard: Shard) -> str:
    return f"{shard[0]}/{shard[1]}"


def deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn once per call site that ``old`` is an old spelling of ``new`` (DeprecationWarning)."""
    warnings.warn(f"deprecated: {old}; use {new}", DeprecationWarning, stacklevel=stacklevel)


def shard_of(shard: Optional[object], rank: Optional[int], world_size: Optional[int], *,
             where: str = "", stacklevel: int = 4) -> Optional[Shard]:
    """The ``shard`` keyword, or one made of the old ``rank``/``world_size`` (warned); None when neither is
    given (the caller reads torchrun's environment). ``rank`` without ``world_size`` keeps the environment's
    world size, as before."""
    if rank is None and world_size is None:
        return None if shard is None else check_shard(shard)
    if shard is not None:
        raise TypeError(f"{where}give shard=(i, n) or the old rank/world_size, not both")
    deprecated(f"{where}rank=/world_size=", "shard=(i, n)", stacklevel=stacklevel)
    n = env_shard()[1] if world_size is None else world_size  # the old rule: unset ones from torchrun's env
    i = rank if rank is not None else (int(os.environ.get("RANK", "0")) if n > 1 else 0)
    return check_shard((i, n), "rank/world_size")


def old_flag(new_flag: str) -> "type[argparse.Action]":
    """An argparse action for an old flag that stores like ``new_flag`` and logs a one-line deprecation."""

    class OldFlag(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: Optional[str] = None) -> None:
            logging.getLogger("feedstock").warning("deprecated: %s; use %s", option_string, new_flag)
            setattr(namespace, self.dest, values)

    return OldFlag
