"""engine="ray" without a cluster: a local Ray instance started and stopped with the loader, the one-line
errors (Ray missing, an address that cannot be reached), and the stream keys and flags that choose it."""
from __future__ import annotations

import argparse
import os
import socket
import sys

import numpy as np
import pytest
import ray
from ray_engine_helpers import (
    assert_no_new_shm,
    assert_no_process_left,
    assert_same,
    copies,
    quiet_ray_logs,
    shm_entries,
)

from feedstock.engines import RayLoader
from feedstock.engines.ray_session import RaySession
from feedstock.loaders import ArraySource
from feedstock.pipeline.loader import Loader
from feedstock.stream import Stream, add_stream_arguments, stream_from_args


def _source(n: int = 50) -> ArraySource:
    return ArraySource(data=np.arange(n * 6, dtype=np.uint8).reshape(n, 2, 3), label=np.arange(n))


def test_a_local_instance_starts_and_stops_with_the_loader():
    quiet_ray_logs()
    assert not ray.is_initialized()
    before = shm_entries()
    source = _source()
    kw = dict(batch_size=8, shuffle=True, seed=4, drop_last=False)
    with Loader(source, None, workers=0, **kw) as local:
        want = copies(local)
    train = RayLoader(source, None, workers=2, **kw)
    val = RayLoader(source, None, workers=2, **dict(kw, shuffle=False))
    try:
        got = copies(train)
        assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2  # workers=2 CPUs
        first_val = copies(val)  # a second loader shares the instance the first one started
        train.close()
        assert ray.is_initialized()  # the validation loader still uses it
        assert_same(copies(val), first_val)
        # no keywords beyond the batch size: RayLoader's defaults give the Loader's batches
        n = 21  # 21 = 2 * 8 + 5: a short last batch, kept by default
        plain = ArraySource(data=np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2), label=np.arange(n))
        with Loader(plain, None, batch_size=8, workers=0) as local:
            plain_want = copies(local)
        with RayLoader(plain, None, batch_size=8, workers=1) as remote:
            plain_got = copies(remote)
        assert [len(b["label"]) for b in plain_want] == [8, 8, 5]
        assert [int(v) for b in plain_want for v in b["label"]] == list(range(n))  # in order: no shuffle by default
        assert_same(plain_got, plain_want)
    finally:
        train.close()
        val.close()
    assert not ray.is_initialized()  # the last loader to close stopped it
    assert_same(got, want)
    assert_no_process_left(os.getpid())
    assert_no_new_shm(before)


def test_ray_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'feedstock\[ray\]'"):
        RaySession(None, 1)


def test_an_unreachable_address_is_named_in_one_line():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loader = RayLoader(_source(), None, batch_size=8, address=f"127.0.0.1:{port}")
    with pytest.raises(ConnectionError) as err:
        next(iter(loader))
    assert f"127.0.0.1:{port}" in str(err.value) and "\n" not in str(err.value)
    assert not ray.is_initialized()


def test_stream_keys_and_flags_choose_the_engine():
    parser = argparse.ArgumentParser()
    add_stream_arguments(parser, source=False)
    args = parser.parse_args(["--engine", "ray", "--address", "head:6379"])
    stream = stream_from_args(args, source="data.csv")
    assert (stream.engine, stream.address) == ("ray", "head:6379")
    assert Stream().engine == "local"
    with pytest.raises(ValueError, match="engine"):
        Stream(source="x", engine="spark")
    with pytest.raises(ValueError, match="address"):
        Stream(source="x", address="head:6379")  # a cluster address needs engine: ray
    # the engine does not change the batches, so feeds of one stream need not agree on it
    assert Stream(source="a").fingerprint() == Stream(source="a", engine="ray").fingerprint()
