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


PARENT_USES_OPENCV = """
import cv2, numpy as np
from feedstock.pipeline.loader import Loader
from feedstock.loaders.array import ArraySource

start = cv2.getNumThreads()
img = np.random.default_rng(0).integers(0, 255, (1500, 1500, 3), dtype=np.uint8)
source = ArraySource(data=np.arange(8 * 4, dtype=np.uint8).reshape(8, 4), label=np.arange(8))
for i in range(8):
    cv2.resize(img, (1100, 1100))  # OpenCV's pool runs threads in this process now
    cv2.GaussianBlur(img, (5, 5), 0)
    with Loader(source, batch_size=4, workers=1, start_method="fork", shuffle=False) as loader:
        assert next(iter(loader))["label"].tolist() == [0, 1, 2, 3]
print("ok", cv2.getNumThreads() == start)
"""


def test_workers_forked_after_opencv_ran_its_thread_pool_start():
    """A fork while OpenCV's pool had threads left the worker hung in its first OpenCV call (most tries)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", PARENT_USES_OPENCV], cwd=root, capture_output=True, text=True,
                          timeout=240, env=dict(os.environ, PYTHONPATH=root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the parent's own pool size is back after each fork
    assert proc.stdout.split() == ["ok", "True"]
