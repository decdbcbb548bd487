"""Sampler: the dataset indices of batch k from (seed, epoch, shuffle, drop_last, rank, world_size).

Every rank computes the same global order for an epoch (a permutation drawn
from (seed, epoch) when ``shuffle``), then takes its strided shard
``order[rank::world_size]`` (Caffe's multi-GPU ``Skip()`` is the same
round-robin striding). Every rank gets the same number of samples and batches:

* ``drop_last=True``: the global order is truncated to a multiple of
  ``world_size`` (the ``len % world_size`` dropped records change every epoch
  when shuffling), so shards are disjoint; then each rank drops its last
  partial batch.
* ``drop_last=False``: the global order is padded by wrapping around to a
  multiple of ``world_size`` (as torch's DistributedSampler does), so shards
  cover the whole dataset and only the padding repeats records; each rank's
  last batch may be short.

``batch_shard=(j, n)`` narrows a shard's epoch to its batches ``j, j+n, j+2n, ...``
(remote feed servers split one epoch this way, see
:func:`feedstock.remote.served.serve_shard`: interleaving the n batch shards batch
by batch gives back the whole epoch, whatever n is). Their batches keep their rows and
order; ``num_batches`` and ``shard_size`` count the batch shard's only, ``shard()``
holds its rows. The Loader itself has no batch_shard option. ``shard``/``batch_shard``
are :mod:`feedstock.shard`'s word; ``rank=``/``world_size=``/``part=`` still work, warned.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from ..errors import KeyedError
from ..rng import check_seed
from ..shard import WHOLE, Shard, check_shard, deprecated, env_shard, shard_of

_ORDER_TAG = 0x53414D50  # "SAMP": keeps the order stream apart from any per-sample stream


def dist_from_env(
    rank: Optional[int], world_size: Optional[int], env: Mapping[str, str] = os.environ
) -> Tuple[int, int]:
    """Explicit rank/world_size, else torchrun's ``RANK``/``WORLD_SIZE`` (read once, at construction)."""
    if world_size is None:
        world_size = int(env.get("WORLD_SIZE", "1"))
    if rank is None:
        rank = int(env.get("RANK", "0")) if world_size > 1 else 0
    if world_size < 1:
        raise ValueError(f"{world_size=} must be >= 1")
    if not 0 <= rank < world_size:
        raise ValueError(f"{rank=} must be in [0, world_size={world_size})")
    return int(rank), int(world_size)


def shard_or_env(shard: Optional[Shard], env: Mapping[str, str] = os.environ) -> Shard:
    """``shard`` (checked), else torchrun's ``RANK``/``WORLD_SIZE`` (read once, at construction)."""
    return env_shard(env) if shard is None else check_shard(shard)


def check_part(part: Tuple[int, int]) -> Tuple[int, int]:
    """Deprecated name of :func:`feedstock.shard.check_shard` for a batch shard."""
    deprecated("check_part", "feedstock.shard.check_shard")
    return check_shard(part, "part")


class Sampler:
    """Deterministic batch indices for one rank; picklable and cheap (caches two epochs' shards:
    near an epoch's end workers fill batches of this epoch and the next)."""

    def __init__(
        self,
        length: int,
        *,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        shard: Shard = WHOLE,
        batch_shard: Shard = WHOLE,
        rank: Optional[int] = None,  # deprecated: shard=(rank, world_size)
        world_size: Optional[int] = None,
        part: Optional[Shard] = None,  # deprecated: batch_shard
    ):
        if length < 1:
            raise ValueError(f"the source is empty ({length=})")
        if batch_size < 1:
            raise ValueError(f"{batch_size=} must be positive")
        seed = check_seed(seed)
        if rank is not None or world_size is not None:
            shard = shard_of(None if shard == WHOLE else shard, rank, world_size, where="Sampler: ") or WHOLE
        if part is not None:
            deprecated("Sampler(part=)", "batch_shard=(j, n)")
            batch_shard = part
        self.shard = check_shard(shard)
        rank, world_size = self.shard
        self.length, self.batch_size = int(length), int(batch_size)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.rank, self.world_size = rank, world_size  # the shard's i and n, by their DDP names
        if drop_last:
            self.shard_size = self.length // world_size
            self.num_batches = self.shard_size // batch_size
        else:
            self.shard_size = -(-self.length // world_size)
            self.num_batches = -(-self.shard_size // batch_size)
        if self.num_batches < 1:
            raise KeyedError(  # the front end spells the settings (and leaves out a fix already made)
                f"{length} records{f' shared {world_size} ways ({{shard={rank}/{world_size}}})' if world_size > 1 else ''} give "
                f"no full batch of {{batch_size={batch_size}}}", ("lower {batch_size}", "or keep the short batch with {drop_last=False}"))
        self.rank_size, self.rank_batches = self.shard_size, self.num_batches  # the whole rank's epoch
        self.batch_shard = check_shard(batch_shard, "batch_shard")
        j, n = self.batch_shard
        if n > 1:
            self.num_batches = len(range(j, self.rank_batches, n))
            if self.num_batches < 1:
                raise ValueError(f"batch shard {j}/{n} gets none of the {self.rank_batches} batches per epoch")
            last = self.rank_batches - 1  # the only batch that may be short
            self.shard_size = self.num_batches * batch_size - (
                (self.rank_batches * batch_size - self.rank_size) if (last - j) % n == 0 else 0)
        self._cached: Dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.num_batches

    @property
    def part(self) -> Shard:
        """The old name of :attr:`batch_shard`."""
        return self.batch_shard

    def replace(self, **changes: object) -> "Sampler":
        """A sampler with the same settings but ``changes`` (e.g. another seed)."""
        settings = dict(length=self.length, batch_size=self.batch_size, shuffle=self.shuffle, seed=self.seed,
                        drop_last=self.drop_last, shard=self.shard, batch_shard=self.batch_shard)
        unknown = set(changes) - set(settings)
        if unknown:
            raise TypeError(f"Sampler has no settings {sorted(unknown)}")
        settings.update(changes)
        length = settings.pop("length")
        return Sampler(length, **settings)  # type: ignore[arg-type]

    def global_order(self, epoch: int) -> np.ndarray:
        """All indices in this epoch's order (before sharding)."""
        if not self.shuffle:
            return np.arange(self.length, dtype=np.int64)
        seq = np.random.SeedSequence([self.seed, int(epoch), _ORDER_TAG])
        return np.random.Generator(np.random.Philox(seq)).permutation(self.length).astype(np.int64)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """This rank's indices for ``epoch`` in order, ``shard_size`` long (read-only)."""
        cached = self._cached.get(epoch)
        if cached is not None:
            return cached
        order = self.global_order(epoch)
        total = self.rank_size * self.world_size
        if total <= self.length:
            order = order[:total]
        else:
            order = np.resize(order, total)  # np.resize repeats from the start: wrap-around padding
        shard = order[self.rank :: self.world_size]
        j, n = self.batch_shard
        if n > 1:  # this batch shard's batches, rows kept in order
            rows = (np.arange(j, self.rank_batches, n)[:, None] * self.batch_size
                    + np.arange(self.batch_size)).ravel()
            shard = shard[rows[rows < self.rank_size]]
        shard = np.ascontiguousarray(shard)
        shard.flags.writeable = False
        if len(self._cached) >= 2:
            del self._cached[next(iter(self._cached))]  # the older entry
        self._cached[int(epoch)] = shard
        return shard

    def batch_rows(self, k: int) -> int:
        """Number of rows of batch ``k`` (the last one may be short when ``drop_last=False``)."""
        if not 0 <= k < self.num_batches:
            raise IndexError(f"batch {k} out of range [0, {self.num_batches})")
        return min(self.batch_size, self.shard_size - k * self.batch_size)

    def batch(self, epoch: int, k: int) -> np.ndarray:
        """Dataset indices of batch ``k`` of ``epoch`` for this rank."""
        start = k * self.batch_size
        return self.epoch_order(epoch)[start : start + self.batch_rows(k)]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cached"] = {}  # workers rebuild the shard; never ship the array
        return state

    def __repr__(self) -> str:
        return (
            f"Sampler(length={self.length}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"seed={self.seed}, drop_last={self.drop_last}, shard={self.rank}/{self.world_size}, "
            f"batch_shard={self.batch_shard[0]}/{self.batch_shard[1]})"
        )
