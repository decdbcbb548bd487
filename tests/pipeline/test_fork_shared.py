"""Forked workers keep the parent's heap shared: a collection in a worker does not copy it page by page."""
from __future__ import annotations

import gc

import numpy as np

from feedstock.pipeline.loader import Loader
from feedstock.threads import fork_shared


def _private_kb() -> int:
    """Private dirty kB of this process (pages it no longer shares with its parent)."""
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith("Private_Dirty:"))


class CollectingDataset:
    """Each record: this worker's private memory after a full collection (a user's code may run one)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        gc.collect()
        return {"private_kb": np.int64(_private_kb())}


def test_a_full_collection_in_a_worker_leaves_the_parents_heap_shared(no_leaks):
    # about 60 MB of gc-tracked objects in the parent: a collection in a worker that has them in
    # its young or old generations writes into every one of their headers
    heap = [{"i": i, "s": [i]} for i in range(300_000)]
    with Loader(CollectingDataset(), batch_size=2, workers=1, start_method="fork", shuffle=False) as loader:
        private = int(next(iter(loader))["private_kb"].max())
    assert len(heap) == 300_000
    # Without the freeze the worker's private pages held the whole heap above (about 60 MB).
    assert private < 25_000, f"worker made {private} kB private after gc.collect()"


def test_the_parent_stays_collectable_and_a_users_own_freeze_is_kept():
    assert gc.get_freeze_count() == 0
    with fork_shared():
        assert gc.get_freeze_count() > 0  # what a fork now would see as permanent
    assert gc.get_freeze_count() == 0  # our objects are collectable again
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with fork_shared():
            pass
        assert gc.get_freeze_count() == frozen  # the caller's freeze is theirs to undo
    finally:
        gc.unfreeze()
