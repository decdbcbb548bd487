"""Loader resume state: a few integers that pin the next batch exactly, for any worker count."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Mapping, Protocol

from ..rng import check_epoch, check_seed  # the rng's limits; check_epoch is re-exported for the loaders


class StreamSetup(Protocol):
    """What a state is checked against: a Sampler, or a RemoteLoader (the servers' common setup)."""

    batch_size: int
    world_size: int
    length: int
    num_batches: int


@dataclass(frozen=True)
class LoaderState:
    """``epoch`` and ``next_batch`` say where to continue; the rest guards against a different setup.

    ``rank`` is deliberately absent: every rank has the same number of batches, so
    one rank's state (the one usually checkpointed) is valid for all ranks.
    """

    seed: int
    epoch: int
    next_batch: int
    batch_size: int
    world_size: int
    length: int

    def to_dict(self) -> Dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: Mapping[str, int]) -> "LoaderState":
        names = set(cls.__dataclass_fields__)
        missing = names - set(state)
        if missing:
            raise ValueError(f"loader state lacks {sorted(missing)} (got keys {sorted(state)})")
        values = {}
        for name in names:
            value = state[name]
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise ValueError(f"loader state {name}={value!r} must be a non-negative integer")
            values[name] = int(value)
        check_seed(values["seed"], name="loader state seed")
        check_epoch(values["epoch"], name="loader state epoch")
        return cls(**values)

    def position(self, num_batches: int) -> "tuple[int, int]":
        """(epoch, next batch) to continue from: a finished epoch continues with the next one."""
        if self.next_batch >= num_batches:
            return self.epoch + 1, 0
        return self.epoch, self.next_batch

    def check(self, sampler: StreamSetup) -> None:
        """ValueError when this state cannot continue exactly with ``sampler``'s setup (a Sampler, or
        anything with its batch_size, world_size, length and num_batches: a RemoteLoader)."""
        ours = {"batch_size": sampler.batch_size, "world_size": sampler.world_size, "length": sampler.length}
        for name, expected in ours.items():
            if getattr(self, name) != expected:
                raise ValueError(
                    f"loader state has {name}={getattr(self, name)} but this loader has {name}={expected}; "
                    "resuming would not continue with the same batches"
                )
        if self.next_batch > sampler.num_batches:
            raise ValueError(f"loader state next_batch={self.next_batch} > {sampler.num_batches} batches per epoch")
