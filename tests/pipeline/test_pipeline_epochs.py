"""Across epochs: the next epoch is filled ahead, discarded safely when the position changes, errors on time."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from pipeline_helpers import (
    CorruptSource,
    FailOn,
    Jitter,
    assert_same,
    collect,
    make_source,
    reference_batches,
    wait_dead,
)

from feedstock.errors import WorkerError
from feedstock.pipeline.loader import Loader
from feedstock.pipeline.sampler import Sampler
from feedstock.transforms.base import Transform


def _only_in_next_epoch(n: int, batch_size: int) -> tuple:
    """(seed, record): a record dropped from epoch 0 (drop_last) but in batch 0 of epoch 1."""
    for seed in range(200):
        sampler = Sampler(n, batch_size=batch_size, seed=seed)
        used = set(sampler.epoch_order(0)[: sampler.num_batches * batch_size].tolist())
        candidates = set(sampler.batch(1, 0).tolist()) - used
        if candidates:
            return seed, min(candidates)
    raise AssertionError("no such seed")


class LogRecords(Transform):
    """Appends each record's label to a file (one line per sample read), then sleeps ``seconds``."""

    def __init__(self, path: str, seconds: float):
        self.path, self.seconds = path, seconds

    def __call__(self, sample, rng):
        with open(self.path, "a") as f:
            f.write(f"{int(sample['label'])}\n")
        time.sleep(self.seconds)
        return sample

    def output_spec(self, spec):
        return spec


def test_the_next_epoch_is_issued_before_the_pass_ends(no_leaks):
    source = make_source(24)
    with Loader(source, [Jitter()], batch_size=4, workers=2, prefetch=4, seed=1, shuffle=True,
                drop_last=True) as loader:
        it = iter(loader)
        for _ in range(5):
            next(it)
        assert (1, 0) in loader.issued_ahead()  # batch 4 of 6 in hand: epoch 1 already being filled
        for _ in it:
            pass
        assert loader.issued_ahead() == [(1, 0), (1, 1), (1, 2)]  # every slot but the last batch's busy
        epoch1 = collect(loader)
        assert loader.stats()["discarded_batches"] == 0
    assert_same(epoch1, reference_batches(source, 1, 1, 4))


def test_the_last_batch_of_a_pass_stays_valid_until_the_next_pass(no_leaks):
    with Loader(make_source(16), [Jitter()], batch_size=4, workers=2, prefetch=2, seed=2, shuffle=True,
                drop_last=True) as loader:
        for batch in loader:
            kept = {k: v.copy() for k, v in batch.items()}
        time.sleep(0.2)  # epoch 1's work, issued ahead, has long been written by now
        assert_same([batch], [kept])
        nxt = next(iter(loader))
        assert not np.array_equal(nxt["label"], kept["label"])


@pytest.mark.parametrize("prefetch", [2, 8])
def test_batches_are_identical_for_any_worker_count_over_three_epochs(no_leaks, prefetch):
    source = make_source(45)
    runs = {}
    for workers in (0, 1, 2):
        with Loader(source, [Jitter()], batch_size=4, workers=workers, seed=9, prefetch=prefetch,
                    drop_last=False, shuffle=True) as loader:
            runs[workers] = [collect(loader) for _ in range(3)]
    for workers in (1, 2):
        for epoch in range(3):
            assert_same(runs[workers][epoch], runs[0][epoch])
    assert_same(runs[2][2], reference_batches(source, 9, 2, 4, drop_last=False))


def test_repositioning_discards_the_work_ahead_and_stops_predicting(no_leaks):
    source = make_source(24)
    with Loader(source, [Jitter()], batch_size=4, workers=2, seed=3, shuffle=True, drop_last=True) as loader:
        first = collect(loader)
        assert (1, 0) in loader.issued_ahead()
        for _ in range(2):  # an evaluation loader: epoch 0 every time
            loader.set_epoch(0)
            assert_same(collect(loader), first)
            assert loader.issued_ahead() == []  # not guessing the next epoch any more
        assert loader.stats()["discarded_batches"] == 3  # epoch 1's batches issued ahead (prefetch - 1), once
        assert_same(collect(loader), reference_batches(source, 3, 1, 4))  # continues: epoch 1
        assert loader.issued_ahead()[0] == (2, 0)  # continuing again: filling ahead again


def test_load_state_dict_mid_epoch_after_work_was_issued_ahead(no_leaks):
    source = make_source(40)
    with Loader(source, [Jitter()], batch_size=4, workers=2, seed=5, prefetch=3, shuffle=True,
                drop_last=True) as loader:
        reference = collect(loader) + collect(loader)
        state = {**loader.state_dict(), "epoch": 0, "next_batch": 7}
        loader.load_state_dict(state)
        assert_same(collect(loader) + collect(loader), reference[7:])
        discarded = loader.stats()["discarded_batches"]
        assert discarded > 0  # epoch 1's, issued ahead when epoch 0 ended
        loader.load_state_dict({**state, "epoch": 2, "next_batch": 0})  # where it stands already: kept
        next(iter(loader))
        assert loader.stats()["discarded_batches"] == discarded


def test_workers_skip_discarded_work_they_have_not_started(no_leaks, tmp_path):
    log = tmp_path / "reads.txt"
    source = make_source(8)
    with Loader(source, [LogRecords(str(log), 0.02)], batch_size=2, workers=1, prefetch=4, seed=0, shuffle=True,
                drop_last=True) as loader:
        first = collect(loader)  # 4 batches; then epoch 1's 4 batches are queued on the worker
        loader.set_epoch(0)
        assert_same(collect(loader), first)
    reads = len(log.read_text().split())
    # 8 + 8 for the two passes, plus the chunk(s) of epoch 1 the worker had started: not all 8
    assert 16 <= reads <= 16 + 4


@pytest.mark.parametrize("workers", [0, 2])
def test_a_task_error_is_raised_when_its_batch_is_due(no_leaks, workers):
    loader = Loader(make_source(24), [FailOn({13})], batch_size=4, workers=workers, shuffle=False, drop_last=True)
    got = []
    with pytest.raises(WorkerError) as info:
        for batch in loader:
            got.append(batch["label"].tolist())
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]  # the batches before the bad one
    assert info.value.key == "row 13" and loader.state_dict()["next_batch"] == 3
    assert loader.worker_pids() == []


def test_an_error_in_the_next_epoch_does_not_disturb_this_one(no_leaks):
    seed, bad = _only_in_next_epoch(10, 4)
    loader = Loader(CorruptSource(10, [bad]), batch_size=4, workers=2, seed=seed, shuffle=True, drop_last=True)
    assert len(collect(loader)) == 2  # epoch 0 is complete although epoch 1's first batch failed
    with pytest.raises(WorkerError) as info:
        next(iter(loader))
    assert info.value.key == f"rec-{bad:04d}"
    with Loader(CorruptSource(10, [bad]), batch_size=4, workers=2, seed=seed, shuffle=True, drop_last=True) as other:
        collect(other)
        other.set_epoch(0)  # the failed batch is discarded with the rest: no error
        collect(other)


def test_skipped_records_count_when_their_batch_is_delivered(no_leaks):
    seed, bad = _only_in_next_epoch(10, 4)
    with Loader(CorruptSource(10, [bad]), batch_size=4, workers=2, seed=seed, on_error="skip",
                max_bad_fraction=0.5, shuffle=True, drop_last=True) as loader:
        collect(loader)
        assert loader.report()["bad_records"] == 0  # filled ahead, not delivered
        loader.set_epoch(0)
        collect(loader)
        assert loader.report()["bad_records"] == 0  # discarded: never delivered
        loader.set_epoch(1)
        labels = np.concatenate([b["label"] for b in collect(loader)]).tolist()
        assert loader.report()["skipped"] == [{"epoch": 1, "index": bad, "key": f"rec-{bad:04d}",
                                               "error": f"RecordError: rec-{bad:04d}: corrupt record"}]
    assert bad not in labels


def test_a_worker_killed_at_the_epoch_boundary_is_replaced(no_leaks):
    source = make_source(24)
    with Loader(source, [Jitter()], batch_size=4, workers=2, seed=4, prefetch=4, shuffle=True,
                drop_last=True) as loader:
        collect(loader)
        victim = loader.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)  # it holds some of epoch 1's batches
        assert wait_dead([victim]) == []
        assert_same(collect(loader), reference_batches(source, 4, 1, 4))
        assert loader.report()["worker_restarts"] == 1


def test_close_with_work_issued_ahead_leaves_nothing(no_leaks):
    loader = Loader(make_source(400), [Jitter()], batch_size=4, workers=2, prefetch=4, shuffle=True, drop_last=True)
    for _ in range(2):
        for _batch in loader:
            pass
    pids = loader.worker_pids()
    loader.close()
    assert wait_dead(pids) == [] and loader.worker_pids() == []
