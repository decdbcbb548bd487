"""Sampler: hand-computed shards, coverage/disjointness over ranks, equal batch counts, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from feedstock.pipeline.sampler import Sampler, dist_from_env


def _batches(sampler: Sampler, epoch: int):
    return [sampler.batch(epoch, k).tolist() for k in range(sampler.num_batches)]


def test_hand_computed_shards_without_shuffle():
    # 10 records, 3 ranks, batch 2. drop_last=False pads by wrapping: 0..9, 0, 1.
    pad = [Sampler(10, batch_size=2, shuffle=False, drop_last=False, shard=(r, 3)) for r in range(3)]
    assert [_batches(s, 0) for s in pad] == [
        [[0, 3], [6, 9]],
        [[1, 4], [7, 0]],
        [[2, 5], [8, 1]],
    ]
    # drop_last=True truncates to 9 records; each rank keeps 3, i.e. one full batch of 2.
    cut = [Sampler(10, batch_size=2, shuffle=False, drop_last=True, shard=(r, 3)) for r in range(3)]
    assert [_batches(s, 0) for s in cut] == [[[0, 3]], [[1, 4]], [[2, 5]]]
    assert [s.epoch_order(0).tolist() for s in cut] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def test_short_last_batch_when_not_dropping():
    s = Sampler(10, batch_size=4, shuffle=False, drop_last=False)
    assert _batches(s, 0) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [s.batch_rows(k) for k in range(3)] == [4, 4, 2]


@pytest.mark.parametrize("n,batch,world", [(100, 8, 1), (101, 8, 3), (37, 5, 4), (64, 64, 1), (9, 2, 8)])
@pytest.mark.parametrize("drop_last", [True, False])
def test_shards_cover_disjointly_with_equal_batch_counts(n, batch, world, drop_last):
    if drop_last and (n // world) // batch == 0:
        with pytest.raises(ValueError, match="drop_last"):
            Sampler(n, batch_size=batch, drop_last=True, shard=(0, world))
        return
    samplers = [Sampler(n, batch_size=batch, seed=5, drop_last=drop_last, shard=(r, world))
                for r in range(world)]
    assert len({s.num_batches for s in samplers}) == 1  # every rank the same number of batches
    per_rank = [np.concatenate(_batches(s, 3)) for s in samplers]
    assert len({len(p) for p in per_rank}) == 1
    everything = np.concatenate(per_rank)
    if drop_last:
        assert len(set(everything.tolist())) == len(everything)  # disjoint
        assert len(everything) == world * ((n // world) // batch) * batch  # only remainders dropped
    else:
        assert set(everything.tolist()) == set(range(n))  # every record seen
        assert len(everything) == -(-n // world) * world  # only the wrap-around padding repeats


def test_order_is_a_pure_function_of_seed_and_epoch():
    a = Sampler(50, batch_size=5, seed=11)
    b = Sampler(50, batch_size=5, seed=11)
    assert _batches(a, 2) == _batches(b, 2)
    assert _batches(a, 2) != _batches(a, 3)  # reshuffled per epoch
    assert _batches(a, 2) != _batches(Sampler(50, batch_size=5, seed=12), 2)
    assert sorted(a.global_order(7).tolist()) == list(range(50))
    assert Sampler(50, batch_size=5, shuffle=False).global_order(7).tolist() == list(range(50))


def test_dist_from_env_reads_torchrun_variables():
    assert dist_from_env(None, None, env={}) == (0, 1)
    assert dist_from_env(None, None, env={"RANK": "2", "WORLD_SIZE": "4"}) == (2, 4)
    assert dist_from_env(1, 2, env={"RANK": "3", "WORLD_SIZE": "4"}) == (1, 2)  # explicit wins
    with pytest.raises(ValueError, match="rank=4"):
        dist_from_env(4, 4, env={})
    with pytest.raises(ValueError, match="world_size=0"):
        dist_from_env(0, 0, env={})


@pytest.mark.parametrize("kwargs,match", [
    ({"batch_size": 0}, "batch_size=0"),
    ({"batch_size": 4, "seed": -1}, "seed=-1"),
])
def test_invalid_configuration_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sampler(10, **kwargs)
