"""Faults: worker exceptions, skipping bad records, SIGKILLed and hung workers, /dev/shm space."""
from __future__ import annotations

import logging
import os
import signal

import pytest
from pipeline_helpers import (
    CorruptSource,
    FailOn,
    Huge,
    Jitter,
    KillSelfOnce,
    SleepOn,
    assert_same,
    collect,
    make_source,
    wait_dead,
)

from feedstock.errors import ShmSpaceError, TooManyBadRecords, WorkerError, WorkerTimeout
from feedstock.pipeline.loader import Loader
from feedstock.pipeline.sampler import Sampler


@pytest.mark.parametrize("workers", [0, 2])
def test_transform_exception_is_reraised_with_traceback_and_key(no_leaks, workers):
    loader = Loader(make_source(24), [Jitter(), FailOn({13})], batch_size=4, workers=workers, seed=0, shuffle=True,
                    drop_last=True)
    pids = []
    with pytest.raises(WorkerError) as info:
        for _ in loader:
            pids = loader.worker_pids()
    err = info.value
    assert err.key == "row 13"
    assert "label 13 is cursed" in str(err) and str(err).startswith("record row 13: ")
    assert "FailOn" in err.worker_traceback or "__call__" in err.worker_traceback
    assert 'raise ValueError(f"label' in err.worker_traceback  # the worker's own source line
    assert loader.worker_pids() == [] and wait_dead(pids) == []  # shut down without a `with`


def test_source_exception_names_the_record(no_leaks):
    loader = Loader(CorruptSource(20, bad={6}), batch_size=4, workers=2, shuffle=False, drop_last=True)
    with pytest.raises(WorkerError) as info:
        collect(loader)
    assert info.value.key == "rec-0006" and "corrupt record" in str(info.value)
    assert "RecordError" in info.value.worker_traceback


def _expected_skip_labels(n: int, bad: set, batch_size: int, seed: int, epoch: int):
    """The documented rule, by hand: a bad record's row takes the next good record in shard order."""
    order = Sampler(n, batch_size=batch_size, seed=seed).epoch_order(epoch).tolist()
    labels = []
    for pos in range(len(order) // batch_size * batch_size):
        step = 0
        while order[(pos + step) % len(order)] in bad:
            step += 1
        labels.append(order[(pos + step) % len(order)])
    return labels


def test_skip_replaces_bad_records_deterministically_and_reports_them(no_leaks, caplog):
    bad = {3, 4, 17, 30, 31, 32, 33, 34, 35, 36}  # includes a run of neighbours in index order
    source = CorruptSource(40, bad=bad)
    runs = []
    caplog.set_level(logging.WARNING, logger="feedstock.loader")
    for workers in (0, 2):
        with Loader(source, batch_size=4, workers=workers, seed=2, on_error="skip", max_bad_fraction=0.5,
                    shuffle=True, drop_last=True) as loader:
            runs.append(collect(loader))
            report = loader.report()
    assert_same(runs[0], runs[1])
    labels = [int(x) for b in runs[1] for x in b["label"]]
    assert labels == _expected_skip_labels(40, bad, 4, seed=2, epoch=0)
    assert report["bad_records"] == len(bad)
    assert sorted(r["key"] for r in report["skipped"]) == sorted(f"rec-{i:04d}" for i in bad)
    assert all("corrupt record" in r["error"] for r in report["skipped"])
    skip_lines = [r for r in caplog.records if "bad record" in r.getMessage()]
    assert 1 <= len(skip_lines) <= 2 * 5  # rate-limited: 5 per loader one by one, not all 10 twice


def test_too_many_bad_records(no_leaks):
    loader = Loader(CorruptSource(40, bad=range(0, 40, 5)), batch_size=4, workers=2, on_error="skip",
                    max_bad_fraction=0.1, shuffle=True, drop_last=True)
    with pytest.raises(TooManyBadRecords, match="max_bad_fraction=0.1"):
        collect(loader)
    assert loader.worker_pids() == []


def test_sigkilled_worker_is_replaced_and_the_epoch_is_unchanged(no_leaks):
    source = make_source(48)
    kw = dict(batch_size=4, seed=6, prefetch=3, shuffle=True, drop_last=True)
    with Loader(source, [Jitter()], workers=0, **kw) as ref:
        expected = collect(ref)
    with Loader(source, [Jitter(), SleepOn(0.004)], workers=2, timeout=20, **kw) as loader:
        got = []
        for k, batch in enumerate(loader):
            got.append({n: v.copy() for n, v in batch.items()})
            if k == 2:
                victim = loader.worker_pids()[0]
                os.kill(victim, signal.SIGKILL)
        assert loader.report()["worker_restarts"] == 1
        assert victim not in loader.worker_pids() and len(loader.worker_pids()) == 2
    assert_same(got, expected)


def test_worker_killed_inside_a_task_is_redone(no_leaks, tmp_path):
    source = make_source(24)
    with Loader(source, [Jitter()], batch_size=4, workers=0, seed=1, shuffle=True, drop_last=True) as ref:
        expected = collect(ref)
    marker = str(tmp_path / "killed")
    with Loader(source, [KillSelfOnce(label=9, marker=marker), Jitter()], batch_size=4, workers=2, seed=1,
                shuffle=True, drop_last=True) as loader:
        assert_same(collect(loader), expected)
        assert loader.stats()["worker_restarts"] == 1 and os.path.exists(marker)


def test_without_replacement_a_death_is_an_error(no_leaks, tmp_path):
    marker = str(tmp_path / "killed")
    loader = Loader(make_source(24), [KillSelfOnce(label=9, marker=marker)], batch_size=4, workers=2,
                    replace_dead_workers=False, shuffle=True, drop_last=True)
    with pytest.raises(WorkerError, match="killed by SIGKILL"):
        collect(loader)


def test_hung_worker_trips_the_timeout(no_leaks):
    loader = Loader(make_source(16), [SleepOn(None, labels={5})], batch_size=4, workers=2, shuffle=False,
                    timeout=2.0, drop_last=True)  # a wide margin: only the hung task may time out on a busy machine
    with pytest.raises(WorkerTimeout) as info:
        collect(loader)
    text = str(info.value)
    assert "worker" in text and "pid" in text and "batch 1 of epoch 0" in text
    assert "row 4, row 5, row 6, row 7" in text and "working on record row 5" in text
    assert loader.worker_pids() == []


def test_too_little_shm_space_is_an_actionable_error(no_leaks):
    loader = Loader(make_source(8), [Huge()], batch_size=2, workers=1, shuffle=True, drop_last=True)
    with pytest.raises(ShmSpaceError, match="prefetch or batch_size"):
        next(iter(loader))
