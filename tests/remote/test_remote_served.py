"""The feed server's view of a Loader: one batch shard of the epoch (serve_shard) and leased batches (leased)."""
from __future__ import annotations

import numpy as np
import pytest
from pipeline_helpers import Jitter, collect, make_source

from feedstock.loaders.array import ArraySource
from feedstock.pipeline.loader import Loader
from feedstock.pipeline.sampler import Sampler
from feedstock.remote.served import leased, serve_shard


def test_public_loader_has_no_part_option():
    with pytest.raises(TypeError, match="part"):
        Loader(make_source(8), batch_size=2, part=(0, 2), shuffle=True, drop_last=True)  # type: ignore[call-arg]


def test_a_sampler_injected_at_construction_is_the_served_part():
    source, kw = make_source(30), dict(batch_size=4, seed=5, shuffle=True, drop_last=True, workers=0)
    with Loader(source, [Jitter()], **kw) as narrowed:
        part = Sampler(30, batch_size=4, seed=5, batch_shard=(1, 3))
        serve_shard(narrowed, (1, 3))
        with Loader(source, [Jitter()], sampler=part, **kw) as injected:
            assert len(injected) == len(narrowed) == len(range(1, 7, 3))
            for a, b in zip(collect(injected), collect(narrowed)):
                np.testing.assert_array_equal(a["data"], b["data"])
    with pytest.raises(ValueError, match="does not fit"):
        Loader(source, sampler=Sampler(31, batch_size=4), **kw)


@pytest.mark.parametrize("n,drop_last", [(2, True), (3, False)])
def test_parts_interleaved_give_back_the_whole_stream(no_leaks, n, drop_last):
    source = make_source(30)
    kw = dict(batch_size=4, seed=5, drop_last=drop_last, shuffle=True)
    with Loader(source, [Jitter()], workers=0, **kw) as whole:
        want = [collect(whole), collect(whole)]  # epochs 0 and 1
    parts = [serve_shard(Loader(source, [Jitter()], workers=2 if j == 0 else 0, **kw), (j, n)) for j in range(n)]
    try:
        for epoch in (0, 1):
            got = [collect(p) for p in parts]
            assert sum(len(g) for g in got) == len(want[epoch])
            for k, batch in enumerate(want[epoch]):
                part = got[k % n][k // n]
                for name in batch:
                    np.testing.assert_array_equal(part[name], batch[name])
        assert [len(p) for p in parts] == [len(range(j, len(want[0]), n)) for j in range(n)]
        assert parts[1].state_dict()["epoch"] == 2
    finally:
        for p in parts:
            p.close()


def test_serve_shard_rejects_a_bad_shard():
    for part in [(2, 2), (-1, 2), (0, 0), "2/2", "0-2", (0.0, 2), (True, 2)]:
        with pytest.raises(ValueError, match="batch_shard="):
            serve_shard(Loader(make_source(8), batch_size=2, workers=0, shuffle=True,
                              drop_last=True), part)  # type: ignore[arg-type]


def test_leased_batches_stay_valid_until_released(no_leaks):
    data = np.arange(40 * 3, dtype=np.int32).reshape(40, 3)
    with Loader(ArraySource(data=data), batch_size=4, workers=1, shuffle=False, prefetch=4, drop_last=True) as loader:
        held = []
        for k, (batch, release) in enumerate(leased(loader)):
            held.append((k, batch, release))
            if len(held) == 3:  # three of four slots held: the fourth keeps the worker going
                k0, b0, r0 = held.pop(0)
                np.testing.assert_array_equal(b0["data"], data[4 * k0 : 4 * k0 + 4])  # not overwritten
                r0()
                r0()  # a second release is harmless
        assert k == 9
        # a repositioned loader drops its leases: late releases change nothing
        loader.set_epoch(1)
        assert [b["data"][0, 0] for b in loader] == [12 * k for k in range(10)]
        for _, _, release in held:
            release()
        it = leased(loader)
        leases = [next(it) for _ in range(4)]
        with pytest.raises(RuntimeError, match="all 4 slots are held"):
            next(it)
        del leases
