"""The trainer's hand-over: worker scheduling policy, the trainer's slot count, and draws that must not move.

Issue 22 (second round) made the feed cheaper without changing a single value: these
tests pin the per-sample draws and the fused crop/mirror/mean pixels against values
and arithmetic written out here, and check the two scheduling/slot rules.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from feedstock.loaders.base import Source
from feedstock.pipeline.loader import Loader
from feedstock.rng import SampleRngs, sample_rng
from feedstock.spec import ArraySpec
from feedstock.threads import batch_scheduling
from feedstock.trainer.feeding import CHEAP_SLOTS_BYTES, batch_bytes, batch_stream, trainer_prefetch
from feedstock.transforms.caffe import CaffeTransform

# (seed, epoch, index) -> integers(0, 2**31, size=3), then random(): sample_rng as it was before the
# per-sample re-keying and the hand-over work (values printed by that code, kept as literals)
PINNED = {
    (0, 0, 0): ([74607693, 24796466, 1314153177], 0.11142585551493822),
    (0, 1, 7): ([7389367, 1457240671, 1679940753], 0.49789265349618295),
    (12345, 3, 999999): ([1270868650, 718108322, 585349627], 0.13298565951945207),
    (2**63 - 1, 2**24 - 1, 2**40 - 1): ([1809903034, 1486675352, 198603399], 0.3046283867648072),
}
# CaffeTransform(TRAIN, crop 227, mirror).draw on a 3x256x256 image with sample_rng(0, 1, i), i = 0..5
PINNED_DRAWS = [(False, 25, 19), (False, 17, 15), (False, 5, 11), (False, 7, 2), (False, 29, 19), (False, 19, 6)]


@pytest.mark.parametrize("key", sorted(PINNED))
def test_draws_are_pinned_for_both_generators(key):
    ints, real = PINNED[key]
    rngs = SampleRngs(key[0])
    for gen in (sample_rng(*key), rngs(key[1], key[2])):
        assert gen.integers(0, 2**31, size=3).tolist() == ints
        assert gen.random() == real
    # the re-keyed generator starts afresh for the next sample, whatever was drawn before
    rngs(0, 123).random(1000)
    again = rngs(key[1], key[2])
    assert again.integers(0, 2**31, size=3).tolist() == ints


def test_caffe_draws_are_pinned():
    t = CaffeTransform(phase="TRAIN", crop_size=227, mirror=True, mean_value=(104, 117, 123))
    rngs = SampleRngs(0)
    assert [t.draw((3, 256, 256), sample_rng(0, 1, i)) for i in range(6)] == PINNED_DRAWS
    assert [t.draw((3, 256, 256), rngs(1, i)) for i in range(6)] == PINNED_DRAWS


@pytest.mark.parametrize("values", [(104, 117, 123), (103.939, 116.779, 123.68)])
def test_fused_write_of_a_decoded_image_is_the_float32_arithmetic(values):
    """The recipe's write (crop of HWC memory, mirrored or not) equals numpy's float32 arithmetic."""
    t = CaffeTransform(phase="TRAIN", crop_size=227, mirror=True, mean_value=values)
    rng = np.random.default_rng(5)
    hwc = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    chw = hwc.transpose(2, 0, 1)  # how a decoded image reaches the transform: a view of HWC memory
    mean = np.array(values, np.float32)[:, None, None]
    seen = set()
    for i in range(40):
        mirror, top, left = t.draw(chw.shape, sample_rng(3, 0, i))
        seen.add(mirror)
        out = {"data": np.full((3, 227, 227), np.nan, np.float32)}
        t.into({"data": chw}, sample_rng(3, 0, i), out)
        crop = chw[:, top : top + 227, left : left + 227]
        want = (crop[:, :, ::-1] if mirror else crop).astype(np.float32) - mean
        assert out["data"].tobytes() == want.tobytes()
    assert seen == {False, True}


def test_trainer_prefetch_rule():
    mnist = 64 * (28 * 28 + 8)  # uint8 image + int64 label per row
    assert trainer_prefetch(4, 2, mnist) == 8
    assert trainer_prefetch(4, 3, mnist) == 12
    assert trainer_prefetch(4, 0, mnist) == 4  # in-process: one slot anyway
    assert trainer_prefetch(16, 2, mnist) == 16  # more than the rule: kept
    assert trainer_prefetch(4, 2, 64 * 3 * 227 * 227 * 4) == 4  # 40 MB batches: the default
    assert trainer_prefetch(4, 3, 3 * 2**20) == 10  # 10 slots of 3 MiB fit in 32 MiB, 12 do not
    assert trainer_prefetch(4, 2, CHEAP_SLOTS_BYTES // 5) == 5
    spec = {"data": ArraySpec((1, 28, 28), np.uint8), "label": ArraySpec((), np.int64)}
    assert batch_bytes(spec, 64) == mnist


class _Policy(Source):
    """Each record is the scheduling policy of the process that reads it."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i):
        return {"data": np.full((1,), os.sched_getscheduler(0), np.int64), "label": np.asarray(i, np.int64)}

    def key(self, i):
        return f"rec-{i}"


# forkserver: workers forked from a clean server, not from this process, whose OpenCV thread pool
# earlier tests (or the fused write above) may have used: a fork of it can hang in cv2.setNumThreads
START = "forkserver"


def _policies(workers: int, **kw) -> set:
    with Loader(_Policy(), None, batch_size=4, workers=workers, seed=0, start_method=START, **kw) as loader:
        return {int(v) for batch in loader for v in batch["data"].ravel()}


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies only")
def test_workers_run_under_sched_batch():
    main_policy = os.sched_getscheduler(0)
    assert main_policy != os.SCHED_BATCH
    assert _policies(2) == {os.SCHED_BATCH}
    assert os.sched_getscheduler(0) == main_policy  # the consumer's own policy never changes
    assert _policies(0) == {main_policy}  # in-process reading is the consumer itself


def _in_child(fn) -> int:
    """Exit status of a forked child running ``fn()`` (0 when it returned True)."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if fn() else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies only")
def test_batch_scheduling_sets_the_calling_process_unless_told_not_to(monkeypatch):
    before = os.sched_getscheduler(0)
    assert _in_child(lambda: batch_scheduling() and os.sched_getscheduler(0) == os.SCHED_BATCH) == 0
    monkeypatch.setenv("FEEDSTOCK_WORKER_SCHED", "normal")
    assert _in_child(lambda: not batch_scheduling() and os.sched_getscheduler(0) == before) == 0


def test_trainer_loader_gets_the_cheap_batch_slots():
    from feedstock.loaders import ArraySource

    images = np.zeros((64, 1, 28, 28), np.uint8)
    labels = np.arange(64) % 10
    small = batch_stream(ArraySource(data=images, label=labels), batch_size=16, workers=2, shuffle=True, seed=0,
                         drop_last=True, start_method=START)
    chosen = batch_stream(ArraySource(data=images, label=labels), batch_size=16, workers=2, shuffle=True, seed=0,
                          drop_last=True, prefetch=3, start_method=START)
    try:
        assert small.loader.prefetch == 8
        assert chosen.loader.prefetch == 3  # the caller's prefetch is kept
        # same batches whatever the slot count
        a = [b["label"].copy() for b in small.epoch(0)]
        b = [b["label"].copy() for b in chosen.epoch(0)]
        assert len(a) == 4 and all(np.array_equal(x, y) for x, y in zip(a, b))
    finally:
        small.close()
        chosen.close()
