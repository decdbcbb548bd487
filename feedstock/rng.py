"""Per-sample random streams: a pure function of (seed, epoch, index)."""
from __future__ import annotations

import numpy as np

_EPOCH_BITS = 24
_INDEX_BITS = 40


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for sample ``index`` of ``epoch``; independent of worker and timing.

    Philox is counter-based: the 128-bit key packs (seed, epoch, index), so every
    sample has its own stream without a SeedSequence hash (cheap per sample).
    """
    if not 0 <= seed < 2**64:
        raise ValueError(f"{seed=} must be in [0, 2**64)")
    if not 0 <= epoch < 2**_EPOCH_BITS:
        raise ValueError(f"{epoch=} must be in [0, 2**{_EPOCH_BITS})")
    if not 0 <= index < 2**_INDEX_BITS:
        raise ValueError(f"{index=} must be in [0, 2**{_INDEX_BITS})")
    key = (int(seed) << 64) | (int(epoch) << _INDEX_BITS) | int(index)
    return np.random.Generator(np.random.Philox(key=key))
