"""Loader: bit-identical batches for any worker count and across resume, shapes, sharding, stats."""
from __future__ import annotations

import numpy as np
import pytest
from pipeline_helpers import (
    CropTo,
    Jitter,
    ReportThreads,
    SizedSource,
    Times2,
    assert_same,
    collect,
    make_source,
    reference_batches,
)

from feedstock.errors import WorkerError
from feedstock.loaders.array import ArraySource
from feedstock.pipeline.loader import Loader
from feedstock.pipeline.sampler import Sampler
from feedstock.rng import SampleRngs, sample_rng


def test_batches_match_an_independent_computation(no_leaks):
    source = make_source(30)
    with Loader(source, [Jitter()], batch_size=4, workers=0, seed=3, shuffle=True, drop_last=True) as loader:
        got = collect(loader)
    assert_same(got, reference_batches(source, 3, 0, 4))
    assert got[0]["data"].dtype == np.float32 and got[0]["label"].dtype == np.int64


def test_identical_for_0_1_2_and_4_workers_over_two_epochs(no_leaks):
    source = make_source(45)
    runs = {}
    for workers in (0, 1, 2, 4):
        with Loader(source, [Jitter()], batch_size=4, workers=workers, seed=9, prefetch=3, shuffle=True,
                    drop_last=True) as loader:
            runs[workers] = [collect(loader), collect(loader)]  # automatic epoch increment
    for workers in (1, 2, 4):
        for epoch in (0, 1):
            assert_same(runs[workers][epoch], runs[0][epoch])
    assert_same(runs[0][1], reference_batches(source, 9, 1, 4))
    assert not np.array_equal(runs[0][0][0]["label"], runs[0][1][0]["label"])  # reshuffled


@pytest.mark.parametrize("split", ["all", "none"])
def test_splitting_batches_across_workers_changes_nothing(no_leaks, split):
    source = make_source(30)
    with Loader(source, [Jitter()], batch_size=7, workers=0, seed=4, drop_last=False, shuffle=True) as ref, \
            Loader(source, [Jitter()], batch_size=7, workers=3, seed=4, drop_last=False, split=split,
                   shuffle=True) as split_loader:
        assert_same(collect(split_loader), collect(ref))


def test_grouping_cheap_batches_changes_nothing(no_leaks):
    source = make_source(200)
    with Loader(source, [Jitter()], batch_size=4, workers=0, seed=4, shuffle=True, drop_last=True) as ref, \
            Loader(source, [Jitter()], batch_size=4, workers=2, seed=4, prefetch=8, shuffle=True,
                   drop_last=True) as grouped:
        assert_same(collect(grouped), collect(ref))
        assert grouped.stats()["tasks"] < len(grouped)  # several cheap batches per task


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_workers_run_opencv_and_blas_single_threaded(no_leaks, start_method):
    with Loader(make_source(8), [ReportThreads()], batch_size=4, workers=2, start_method=start_method, shuffle=True,
                drop_last=True) as loader:
        threads = np.concatenate([b["threads"] for b in collect(loader)])
    assert threads.tolist() == [[1, 1]] * 8


def test_spawned_workers_give_the_same_batches(no_leaks):
    source = make_source(24)
    with Loader(source, [Jitter()], batch_size=4, workers=0, seed=8, shuffle=True, drop_last=True) as ref, \
            Loader(source, [Jitter()], batch_size=4, workers=2, seed=8, start_method="spawn", shuffle=True,
                   drop_last=True) as spawned:
        assert_same(collect(spawned), collect(ref))


def test_another_seed_gives_other_batches(no_leaks):
    source = make_source(20)
    with Loader(source, [Jitter()], batch_size=4, workers=0, seed=1, shuffle=True, drop_last=True) as a, \
            Loader(source, [Jitter()], batch_size=4, workers=0, seed=2, shuffle=True, drop_last=True) as b:
        assert not np.array_equal(next(iter(a))["data"], next(iter(b))["data"])


@pytest.mark.parametrize("resume_workers", [0, 1, 3])
def test_resume_mid_epoch_continues_with_the_next_batch(no_leaks, resume_workers):
    source = make_source(40)
    kw = dict(batch_size=4, seed=5, prefetch=3, shuffle=True, drop_last=True)
    with Loader(source, [Jitter()], workers=2, **kw) as full:
        reference = collect(full) + collect(full)  # epochs 0 and 1
    with Loader(source, [Jitter()], workers=2, **kw) as first:
        it = iter(first)
        head = [{k: v.copy() for k, v in next(it).items()} for _ in range(6)]
        state = first.state_dict()
        del it
    assert state["epoch"] == 0 and state["next_batch"] == 6
    with Loader(source, [Jitter()], workers=resume_workers, **kw) as second:
        second.load_state_dict(state)
        tail = collect(second) + collect(second)
    assert_same(head + tail, reference)


def test_abandoned_pass_resumes_and_set_epoch_restarts(no_leaks):
    source = make_source(24)
    with Loader(source, [Jitter()], batch_size=4, workers=2, seed=0, shuffle=True, drop_last=True) as loader:
        reference = collect(loader)
        loader.set_epoch(0)
        for i, _ in enumerate(loader):
            if i == 1:
                break
        assert loader.state_dict()["next_batch"] == 2
        assert_same(collect(loader), reference[2:])
        assert loader.epoch == 1
        loader.set_epoch(0)
        assert_same(collect(loader), reference)


def test_copy_and_view_semantics(no_leaks):
    source = make_source(16)
    with Loader(source, batch_size=4, workers=2, prefetch=2, shuffle=False, copy=True, drop_last=True) as loader:
        kept = list(loader)  # owned arrays survive later batches
    assert [b["label"].tolist() for b in kept] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    with Loader(source, batch_size=4, workers=0, shuffle=False, drop_last=True) as loader:
        views = list(loader)  # views into one slot: all show the last batch
    assert all(v["label"].tolist() == [12, 13, 14, 15] for v in views)


def test_batches_are_views_of_the_slot_arrays(no_leaks):
    with Loader(make_source(16), batch_size=4, workers=2, prefetch=3, shuffle=True, drop_last=True) as loader:
        assert loader.slot_arrays() == []
        slots = None
        for batch in loader:
            slots = slots or loader.slot_arrays()
            assert sum(np.shares_memory(batch["data"], s["data"]) for s in slots) == 1
        assert len(slots) == 3 and slots[0]["data"].shape == (4, 2, 3)


def test_short_last_batch_and_len(no_leaks):
    with Loader(make_source(10), batch_size=4, workers=2, shuffle=False, drop_last=False) as loader:
        assert len(loader) == 3
        assert [b["label"].tolist() for b in collect(loader)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_rank_shards_cover_the_dataset(no_leaks, monkeypatch):
    source = make_source(23)
    seen, counts = [], set()
    for rank in range(3):
        with Loader(source, batch_size=3, workers=1, seed=4, drop_last=False, shard=(rank, 3),
                    shuffle=True) as loader:
            labels = [b["label"] for b in collect(loader)]
        counts.add(len(labels))
        seen.extend(np.concatenate(labels).tolist())
    assert len(counts) == 1 and set(seen) == set(range(23))
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    loader = Loader(source, batch_size=3, workers=0, shuffle=True,
                    drop_last=True)  # torchrun's variables, read at construction
    monkeypatch.setenv("RANK", "0")
    assert (loader.sampler.rank, loader.sampler.world_size) == (2, 3)


def test_unknown_dims_are_fixed_by_probing_sample_zero(no_leaks):
    source = SizedSource([(5, 6)] * 6 + [(5, 7)] + [(5, 6)] * 5)
    loader = Loader(source, [CropTo(None)], batch_size=4, workers=0, shuffle=False, drop_last=True)
    assert loader.spec["data"].shape == (1, 5, 6)
    assert next(iter(loader))["data"].shape == (4, 1, 5, 6)
    with pytest.raises(WorkerError) as info:
        collect(loader)  # record 6 is 5x7: named by its key
    assert info.value.key == "img-6.png" and "(1, 5, 7)" in str(info.value)
    declared = Loader(source, [CropTo((4, 4))], batch_size=4, workers=2, shuffle=False, drop_last=True)
    with declared:
        assert [b["data"].shape for b in collect(declared)] == [(4, 1, 4, 4)] * 3


def test_batch_fast_path_matches_the_row_path(no_leaks):
    source = make_source(32)

    class RowsOnly(ArraySource):  # hides read_batch: forces one read per record
        read_batch = None

    rows_only = RowsOnly(**source.arrays)
    with Loader(source, [Times2()], batch_size=8, workers=2, seed=1, shuffle=True, drop_last=True) as fast, \
            Loader(rows_only, [Times2()], batch_size=8, workers=0, seed=1, shuffle=True, drop_last=True) as slow:
        got, expected = collect(fast), collect(slow)
    assert_same(got, expected)
    order = Sampler(32, batch_size=8, seed=1).batch(0, 0)
    assert np.array_equal(got[0]["data"], source.arrays["data"][order] * 2)


def test_stats_and_progress(no_leaks):
    with Loader(make_source(32), [Jitter()], batch_size=4, workers=2, progress=True, shuffle=True,
                drop_last=True) as loader:
        collect(loader)
        stats = loader.stats()
    assert stats["batches"] == 8 and stats["samples"] == 32 and stats["epoch"] == 0
    assert stats["samples_per_s"] > 0 and stats["read_s"] > 0 and stats["transform_s"] > 0
    assert 0 <= stats["slots_ready_mean"] <= 4 and stats["wait_s"] >= 0
    assert stats["bad_records"] == 0 and stats["worker_restarts"] == 0


def test_state_dict_checks_the_setup():
    loader = Loader(make_source(20), batch_size=4, workers=0, seed=7, shuffle=True, drop_last=True)
    state = loader.state_dict()
    assert state == {"seed": 7, "epoch": 0, "next_batch": 0, "batch_size": 4, "world_size": 1, "length": 20}
    with pytest.raises(ValueError, match="batch_size=5"):
        Loader(make_source(20), batch_size=5, workers=0, shuffle=True, drop_last=True).load_state_dict(state)
    with pytest.raises(ValueError, match="lacks"):
        loader.load_state_dict({"seed": 1})
    other = Loader(make_source(20), batch_size=4, workers=0, seed=0, shuffle=True, drop_last=True)
    other.load_state_dict({**state, "next_batch": 5})  # the end of epoch 0 is the start of epoch 1
    assert other.state_dict()["epoch"] == 1 and other.sampler.seed == 7


@pytest.mark.parametrize("kwargs,match", [
    ({"workers": -1}, "'workers'=-1"),
    ({"prefetch": 0}, "'prefetch'=0"),
    ({"on_error": "ignore"}, "'on_error'='ignore'"),
    ({"max_bad_fraction": 2.0}, "'max_bad_fraction'=2.0"),
    ({"timeout": 0}, "'timeout'=0"),
    ({"batch_size": 0}, "'batch_size'=0"),
])
def test_invalid_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Loader(make_source(8), **{"batch_size": 2, **kwargs})


def test_reused_generator_draws_exactly_like_sample_rng():
    rngs = SampleRngs(seed=123)
    for epoch, index in [(0, 0), (1, 7), (5, 2**39), (2**24 - 1, 2**40 - 1)]:
        reference = sample_rng(123, epoch, index)
        assert np.array_equal(rngs(epoch, index).integers(0, 2**62, 6), reference.integers(0, 2**62, 6))
        reference = sample_rng(123, epoch, index)
        assert np.array_equal(rngs(epoch, index).normal(size=3), reference.normal(size=3))
