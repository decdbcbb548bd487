"""feedstock.rng: the per-sample key layout, its limits (seed, epoch, index) and the re-keyed generator."""
from __future__ import annotations

import numpy as np
import pytest
from pipeline_helpers import make_source

from feedstock import rng
from feedstock.pipeline.loader import Loader
from feedstock.pipeline.sampler import Sampler
from feedstock.pipeline.state import LoaderState


def test_limits_come_from_the_key_layout():
    assert rng.SEED_BITS + rng.EPOCH_BITS + rng.INDEX_BITS == 128  # one Philox key
    assert (rng.MAX_SEED, rng.MAX_EPOCH, rng.MAX_INDEX) == (2**63, 2**24, 2**40)  # seeds: signed 64-bit
    # the key is seed | epoch | index, written out by hand for one sample
    key = (7 << 64) | (3 << 40) | 11
    expected = np.random.Generator(np.random.Philox(key=key)).random(3)
    np.testing.assert_array_equal(rng.sample_rng(7, 3, 11).random(3), expected)


@pytest.mark.parametrize("seed", [0, 1, 2**63 - 1, np.int64(2**63 - 1), np.uint64(2**63 - 1), np.int32(5)])
def test_check_seed_accepts_the_key_range(seed):
    assert rng.check_seed(seed) == int(seed)


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64, np.uint64(2**63), 1.0, "3", True, None, np.float64(2)])
def test_check_seed_rejects_everything_else_naming_the_key(seed):
    with pytest.raises(ValueError, match=r"must be an integer in \[0, 2\*\*63\)"):
        rng.check_seed(seed)
    with pytest.raises(ValueError, match=r"^param_str key 'seed'="):
        rng.check_seed(seed, name="param_str key 'seed'")


def test_one_seed_limit_for_sampler_loader_and_state():
    top = 2**63 - 1
    assert Sampler(4, batch_size=2, seed=top).seed == top
    assert Loader(make_source(4), batch_size=2, workers=0, seed=top, shuffle=True,
                  drop_last=True).state_dict()["seed"] == top
    for make in (lambda: Sampler(4, batch_size=2, seed=2**63),
                 lambda: Loader(make_source(4), batch_size=2, workers=0, seed=2**63),
                 lambda: LoaderState.from_dict(dict(seed=2**63, epoch=0, next_batch=0, batch_size=2,
                                                    world_size=1, length=4))):
        with pytest.raises(ValueError, match=r"seed'?=9223372036854775808 must be an integer in \[0, 2\*\*63\)"):
            make()


def test_epoch_limit():
    assert rng.check_epoch(2**24 - 1) == 2**24 - 1
    for epoch in (-1, 2**24, 1.5, True):
        with pytest.raises(ValueError, match=r"must be an integer in \[0, 2\*\*24\)"):
            rng.check_epoch(epoch)
    loader = Loader(make_source(4), batch_size=2, workers=0, shuffle=True, drop_last=True)
    with pytest.raises(ValueError, match="epoch=16777216"):
        loader.set_epoch(2**24)
    with pytest.raises(ValueError, match="loader state epoch=16777216"):
        loader.load_state_dict(dict(loader.state_dict(), epoch=2**24))
    with pytest.raises(ValueError, match="index=1099511627776"):
        rng.sample_rng(0, 0, 2**40)


def test_sample_rngs_re_key_exactly_and_check_the_limits():
    rngs = rng.SampleRngs(2**63 - 1)
    for epoch, index in [(0, 0), (2**24 - 1, 2**40 - 1), (9, 12345)]:
        np.testing.assert_array_equal(rngs(epoch, index).random(5), rng.sample_rng(2**63 - 1, epoch, index).random(5))
    a = rngs(1, 2).integers(0, 2**32, 4)
    rngs(1, 3).random(1000)  # the stream of another sample, partly consumed
    np.testing.assert_array_equal(rngs(1, 2).integers(0, 2**32, 4), a)  # re-keyed from its start
    with pytest.raises(ValueError, match="epoch=16777216"):
        rngs(2**24, 0)
    with pytest.raises(ValueError, match="seed=-1"):
        rng.SampleRngs(-1)
