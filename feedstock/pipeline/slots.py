"""SlotBook: which slots of a run are free, held by the consumer, or leased out (the lease bookkeeping).

A batch handed out plainly is *held*: its slot is refilled once the consumer
asks for the next batch (the Loader's contract: views valid until the next
batch). A batch handed out as a *lease* (:meth:`Loader.leased`, what a feed
server sends straight from shared memory) keeps its slot until its release is
called, whatever the consumer asks for meanwhile. A reset (the run moves
elsewhere) frees everything and makes older releases no-ops.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, List


class SlotBook:
    """Slot accounting for one run of ``slots`` slots."""

    def __init__(self, slots: int):
        self.slots = slots
        self.resets = -1  # tells a late lease release from a current one
        self.reset()

    def reset(self) -> None:
        self.free: Deque[int] = deque(range(self.slots))
        self.held: List[int] = []  # the slot handed out last (freed by the next take)
        self.leased: List[int] = []  # slots handed out as leases (freed by release)
        self.resets += 1

    def take_free(self) -> int:
        return self.free.popleft()

    def hand_out(self, slot: int, lease: bool) -> None:
        (self.leased if lease else self.held).append(slot)

    def release_held(self) -> None:
        """The consumer asked for another batch: the slots it held may be refilled."""
        self.free.extend(self.held)
        self.held.clear()

    def release_lease(self, slot: int, resets: int) -> bool:
        """Free a leased slot; False (nothing freed) for a second release or one from before a reset."""
        if resets != self.resets or slot not in self.leased:
            return False
        self.leased.remove(slot)
        self.free.append(slot)
        return True
