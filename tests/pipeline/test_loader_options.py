"""LoaderOptions: one table of defaults and one validator for the Loader, the Stream and the RemoteLoader."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pipeline_helpers import make_source

from feedstock.pipeline.loader import Loader
from feedstock.pipeline.options import DEFAULTS, OPTION_KEYS, LoaderOptions, OptionError
from feedstock.pipeline.sampler import Sampler
from feedstock.stream import Stream, StreamKeyError

# the documented stream defaults (docs/stream.md), written out by hand
DOCUMENTED = dict(batch_size=64, workers=2, shuffle=False, drop_last=False, prefetch=4, on_error="raise",
                  max_bad_fraction=0.01, timeout=120.0, start_method="auto")


def test_the_loader_defaults_are_the_documented_stream_defaults():
    for key, value in DOCUMENTED.items():
        assert getattr(DEFAULTS, key) == value, key
        assert getattr(Stream(), key) == value, key
    with Loader(make_source(10), batch_size=4) as loader:
        assert loader.workers == 2 and loader.prefetch == 4 and loader.options == LoaderOptions(batch_size=4)
        # no shuffle, no drop_last: the sampler's plain order with the short last batch
        assert [loader.sampler.batch(0, k).tolist() for k in range(len(loader))] == \
            [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        assert loader.sampler.seed == 0  # a library user without a seed gets reproducible batches


def test_a_stream_builds_the_loader_its_options_describe(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,target\n" + "".join(f"{i},{i * 2},{i % 3}\n" for i in range(10)))
    stream = Stream(source=str(tmp_path / "t.csv"), batch_size=3, seed=7, workers=0)
    opts = stream.loader_options()
    assert opts == LoaderOptions(batch_size=3, seed=7, workers=0, shard=(0, 1))
    assert stream.loader_options(shuffle=True).shuffle is True
    with stream.build_loader() as built, Loader.from_options(stream.build_source(), None, opts) as by_hand:
        assert built.options == by_hand.options == opts
        for a, b in zip(built, by_hand):
            np.testing.assert_array_equal(a["label"], b["label"])
    unset = Stream(source="x.csv")  # an unset seed: fresh entropy per build, a fixed one thereafter
    assert unset.seed is None and len({unset.loader_options().seed for _ in range(3)}) == 3


@pytest.mark.parametrize("key,value,detail", [
    ("workers", -1, "'workers'=-1 must be >= 0"),
    ("workers", "many", "'workers' must be an int >= 0 or 'auto'"),
    ("prefetch", 0, "'prefetch'=0 must be >= 1"),
    ("on_error", "ignore", "'on_error'='ignore' must be one of"),
    ("max_bad_fraction", 2, "'max_bad_fraction'=2.0 must be in [0, 1]"),
    ("timeout", 0, "'timeout'=0.0 must be positive seconds"),
    ("batch_size", True, "'batch_size' must be int, got True"),
    ("seed", -1, "'seed'=-1 must be an integer in [0, 2**63)"),
    ("start_method", "thread", "'start_method'='thread' must be one of"),
])
def test_one_validator_names_the_key_for_every_engine(key, value, detail):
    for make in (lambda: LoaderOptions(**{key: value}), lambda: Stream(**{key: value}),
                 lambda: Loader(make_source(8), **{"batch_size": 2, key: value})):
        with pytest.raises(OptionError) as info:
            make()
        assert str(info.value).startswith(detail) and info.value.key == key
    assert issubclass(StreamKeyError, ValueError) and StreamKeyError is OptionError


def test_the_remote_loader_checks_its_options_before_connecting():
    pytest.importorskip("zmq")
    from feedstock.remote.client import RemoteLoader

    for kw, detail in [({"prefetch": 0}, "'prefetch'=0 must be >= 1"), ({"prefetch": 1}, "'prefetch'=1 must be in [2,"),
                       ({"seed": 2**63}, "'seed'=9223372036854775808"), ({"timeout": -1}, "'timeout'=-1.0"),
                       ({"heartbeat": 0}, "'heartbeat'=0.0 must be positive")]:
        with pytest.raises(OptionError) as info:
            RemoteLoader(["tcp://127.0.0.1:9"], **kw)
        assert str(info.value).startswith(detail)


def test_from_kwargs_names_unknown_options_and_numpy_ints_pass():
    with pytest.raises(TypeError, match=r"unknown loader options \['part', 'shufle'\]"):
        LoaderOptions.from_kwargs(shufle=True, part=(0, 2))
    opts = LoaderOptions.from_kwargs(batch_size=np.int64(8), seed=np.uint32(3), workers=np.int8(0))
    assert (opts.batch_size, opts.seed, opts.workers) == (8, 3, 0) and type(opts.batch_size) is int
    assert set(opts.as_kwargs()) == set(OPTION_KEYS) == {f.name for f in dataclasses.fields(LoaderOptions)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.seed = 4  # type: ignore[misc]
    with pytest.raises(OptionError, match="'shard'=2/2 must have 0 <= i < n"):
        LoaderOptions(shard=(2, 2))


def test_the_work_split_is_a_constructor_choice():
    source = make_source(24)
    kw = dict(batch_size=4, seed=1, shuffle=True)
    with Loader(source, workers=0, **kw) as ref:
        want = [b["data"].copy() for b in ref]
    for split in ("auto", "none", "all", "first"):
        with Loader(source, workers=2, split=split, **kw) as loader:
            for a, b in zip(want, loader):
                np.testing.assert_array_equal(a, b["data"])
    with pytest.raises(ValueError, match="split='half' must be one of"):
        Loader(source, split="half", **kw)
    assert Sampler(24, batch_size=4).seed == 0
