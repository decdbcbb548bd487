"""The trainer's hand-over: worker scheduling policy, the trainer's slot count, and draws that must not move.

Issue 22 (second round) made the feed cheaper without changing a single value: these
tests pin the per-sample draws and the fused crop/mirror/mean pixels against values
and arithmetic written out here, and check the two scheduling/slot rules.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from feedstock.rng import SampleRngs, sample_rng
from feedstock.spec import ArraySpec
from feedstock.trainer.feeding import CHEAP_SLOTS_BYTES, batch_bytes, source_batches, trainer_prefetch
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


@pytest.fixture
def one_cv_thread():
    """OpenCV's thread pool left unused: a pool started in this process can hang a worker that later
    tests fork from it (seen here in cv2.setNumThreads(1) in the child)."""
    import cv2

    old = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(old)


@pytest.mark.usefixtures("one_cv_thread")
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


CHILD = ("import os; from feedstock.threads import batch_scheduling; before = os.sched_getscheduler(0); "
         "set = batch_scheduling(); print(int(set), before, os.sched_getscheduler(0))")


def _child(env: dict) -> list:
    """(set, policy before, policy after) from batch_scheduling() in a fresh interpreter (no fork of pytest)."""
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    return [int(v) for v in out.stdout.split()]


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies only")
def test_batch_scheduling_sets_the_calling_process_unless_told_not_to():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("FEEDSTOCK_WORKER_SCHED", None)
    assert _child(env) == [1, os.SCHED_OTHER, os.SCHED_BATCH]
    assert _child(dict(env, FEEDSTOCK_WORKER_SCHED="normal")) == [0, os.SCHED_OTHER, os.SCHED_OTHER]
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # this process is untouched


def test_trainer_loader_gets_the_cheap_batch_slots():
    """The rule is applied before the slots exist (workers start at the first iteration)."""
    from feedstock.loaders import ArraySource

    source = ArraySource(data=np.zeros((64, 1, 28, 28), np.uint8), label=np.arange(64) % 10)
    kw = dict(batch_size=16, shuffle=True, seed=0, drop_last=True)
    made = [source_batches(source, workers=2, **kw), source_batches(source, workers=2, prefetch=3, **kw),
            source_batches(source, workers=0, **kw)]
    try:
        assert [m.loader.prefetch for m in made] == [8, 3, 4]  # the caller's prefetch is kept
    finally:
        for m in made:
            m.close()
