"""Per-sample random streams: a pure function of (seed, epoch, index), and the limits that follow from it.

The stream of sample ``index`` in ``epoch`` is Philox keyed by the 128-bit
integer ``seed << 64 | epoch << INDEX_BITS | index``: the seed fills the high
word, epoch and index share the low one. The bit layout is the one source of the
limits on epochs and dataset indices; seeds are kept to signed 64-bit integers
(the key's high word would take 64 bits, but states keep the seed in JSON, numpy
and protobuf int64 fields). The Loader, the sampler and the stream definition (so
the Caffe layer) check them here.
"""
from __future__ import annotations

from typing import TypeGuard, Union

import numpy as np

SEED_BITS = 64
EPOCH_BITS = 24
INDEX_BITS = 64 - EPOCH_BITS
MAX_SEED = 2 ** (SEED_BITS - 1)  # exclusive upper bounds: a seed is a signed 64-bit integer
MAX_EPOCH = 2**EPOCH_BITS
MAX_INDEX = 2**INDEX_BITS
_LOW_MASK = 2**64 - 1


def _is_int(value: object) -> TypeGuard[Union[int, np.integer]]:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_seed(seed: object, *, name: str = "seed") -> int:
    """``seed`` as an int in [0, 2**63); ValueError naming ``name`` otherwise (Loader, Sampler, Caffe layer)."""
    if not _is_int(seed) or not 0 <= int(seed) < MAX_SEED:
        raise ValueError(f"{name}={seed!r} must be an integer in [0, 2**{SEED_BITS - 1})")
    return int(seed)


def check_epoch(epoch: object, *, name: str = "epoch") -> int:
    """``epoch`` as an int in [0, 2**24); ValueError naming ``name`` otherwise."""
    if not _is_int(epoch) or not 0 <= int(epoch) < MAX_EPOCH:
        raise ValueError(f"{name}={epoch!r} must be an integer in [0, 2**{EPOCH_BITS})")
    return int(epoch)


def _key(seed: int, epoch: int, index: int) -> int:
    if not 0 <= index < MAX_INDEX:
        raise ValueError(f"{index=} must be in [0, 2**{INDEX_BITS})")
    return (check_seed(seed) << 64) | (check_epoch(epoch) << INDEX_BITS) | int(index)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for sample ``index`` of ``epoch``; independent of worker and timing.

    Philox is counter-based: every sample has its own stream without a
    SeedSequence hash (cheap per sample).
    """
    return np.random.Generator(np.random.Philox(key=_key(seed, epoch, index)))


class SampleRngs:
    """``sample_rng(seed, epoch, i)`` for one seed, re-keying one generator instead of building one per sample.

    Building ``Generator(Philox(key=...))`` costs ~20 us (Philox draws OS entropy
    for its unused seed); re-keying costs ~3 us. Setting the key with a zero
    counter and an empty buffer is exactly the state ``Philox(key=k)`` starts in,
    so the draws are identical (tests compare both). The generator returned is
    reused: it is valid until the next call (one sample's transforms).
    """

    def __init__(self, seed: int):
        self.seed = check_seed(seed)
        self._bitgen = np.random.Philox(key=0)
        self._gen = np.random.Generator(self._bitgen)
        self._state = self._bitgen.state
        self._zeros = np.zeros(4, dtype=np.uint64)

    def __call__(self, epoch: int, index: int) -> np.random.Generator:
        key = (self.seed << 64) | (int(epoch) << INDEX_BITS) | int(index)
        if not (0 <= index < MAX_INDEX and 0 <= epoch < MAX_EPOCH):
            _key(self.seed, epoch, index)  # raises, naming what is out of range
        state = self._state
        state["state"]["key"] = np.array([key & _LOW_MASK, key >> 64], dtype=np.uint64)
        state["state"]["counter"] = self._zeros
        state["buffer_pos"], state["has_uint32"], state["uinteger"] = 4, 0, 0
        self._bitgen.state = state
        return self._gen
