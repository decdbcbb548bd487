"""Remote feed setup checks: servers of one feed must share source, transform and sampler settings; bind errors."""
from __future__ import annotations

import re
import shutil
import socket

import numpy as np
import pytest
from remote_helpers import ThreadServer, assert_same_batches, copies, local_loader, serve_args

from feedstock import Loader
from feedstock.cli.main import main
from feedstock.errors import RemoteSetupError
from feedstock.fixtures.synthetic import make_raw_lmdb
from feedstock.loaders.array import ArraySource
from feedstock.remote import FeedServer, RemoteLoader
from feedstock.remote.fingerprint import first_difference, portable_repr
from feedstock.remote.served import serve_shard
from feedstock.stream import Stream


@pytest.fixture(scope="module")
def lmdbs(tmp_path_factory):
    """train_lmdb, a byte-identical copy in another folder, and val_lmdb: same shape and length, other data."""
    root = tmp_path_factory.mktemp("setup")
    train = str(root / "train_lmdb")
    make_raw_lmdb(train, np.random.default_rng(1), 32, shape=(3, 16, 16))
    (root / "elsewhere").mkdir()
    copy = shutil.copytree(train, str(root / "elsewhere" / "train_lmdb"))
    val = str(root / "val_lmdb")
    make_raw_lmdb(val, np.random.default_rng(2), 32, shape=(3, 16, 16))
    return train, copy, val


def _refused(loaders, match: str) -> str:
    servers = [ThreadServer(lo) for lo in loaders]
    try:
        with pytest.raises(RemoteSetupError, match=match) as info:
            RemoteLoader([s.endpoint for s in servers], connect_timeout=20)
        return str(info.value)
    finally:
        for s in servers:
            s.close()


def _no_mirror(src: str, *extra: str) -> list:
    return [a for a in serve_args(src, *extra) if a != "--mirror"]


@pytest.mark.parametrize("second,setting", [
    (lambda src: serve_args(src, "--batch-shard", "1/2", "--scale", "0.25"), "scale"),
    (lambda src: serve_args(src, "--batch-shard", "1/2", "--mean-value", "10,20,31"), "mean_value"),
    (lambda src: _no_mirror(src, "--batch-shard", "1/2"), "mirror"),
    (lambda src: serve_args(src, "--batch-shard", "1/2", "--phase", "test"), "phase"),  # same shapes, a centre crop
])
def test_servers_with_different_transform_settings_are_refused(lmdbs, second, setting):
    train = lmdbs[0]
    loaders = [local_loader(serve_args(train, "--batch-shard", "0/2")), local_loader(second(train))]
    message = _refused(loaders, re.escape(setting))
    assert "servers of one feed must share" in message


def test_servers_of_another_source_of_the_same_shape_are_refused(lmdbs):
    train, _, val = lmdbs
    loaders = [local_loader(serve_args(train, "--batch-shard", "0/2")), local_loader(serve_args(val, "--batch-shard", "1/2"))]
    message = _refused(loaders, "source")
    assert "val_lmdb" in message and "train_lmdb" in message


def test_the_same_data_mounted_elsewhere_is_one_feed(lmdbs):
    train, copy, _ = lmdbs
    loaders = [local_loader(serve_args(train, "--batch-shard", "0/2")), local_loader(serve_args(copy, "--batch-shard", "1/2"))]
    servers = [ThreadServer(lo) for lo in loaders]
    try:
        with local_loader(serve_args(train)) as local:
            want = copies(local)
        with RemoteLoader([s.endpoint for s in servers]) as remote:
            assert_same_batches(copies(remote), want)
    finally:
        for s in servers:
            s.close()


def _array_loader(part, **kw) -> Loader:
    kw = {"shuffle": True, "drop_last": True, **kw}  # the Loader defaults these tests were written for
    return serve_shard(Loader(ArraySource(data=np.zeros((40, 2), np.uint8)), batch_size=4, workers=0, **kw), part)


def test_a_given_fingerprint_is_compared_key_by_key():
    for fps, match in (
        (({"scale": 1.0, "source": "a"}, {"scale": 0.5, "source": "a"}), r"scale=0\.5 .* scale=1\.0"),
        (({"source": "a"}, {"source": "a", "crop_size": 4}), r"crop_size=4 .* crop_size=<absent>"),
        (({"t": {"mean": [1, 2]}}, {"t": {"mean": [1, 3]}}), r"t\.mean=\[1, 3\]"),
    ):
        servers = [ThreadServer(_array_loader((j, 2)), fingerprint=fp) for j, fp in enumerate(fps)]
        try:
            with pytest.raises(RemoteSetupError, match=match):
                RemoteLoader([s.endpoint for s in servers], connect_timeout=20)
        finally:
            for s in servers:
                s.close()


def test_stream_fingerprints_name_the_setting_and_equal_ones_pass():
    base = Stream(source="/data/a/train_lmdb", batch_size=4, crop_size=8)
    for other, setting in ((base.replace(scale=0.5), "scale"), (base.replace(source="/data/val_lmdb"), "source"),
                           (base.replace(shuffle=True), "shuffle")):
        servers = [ThreadServer(_array_loader((0, 2)), fingerprint=base.fingerprint()),
                   ThreadServer(_array_loader((1, 2)), fingerprint=other.fingerprint())]
        try:
            with pytest.raises(RemoteSetupError, match=f"{setting}="):
                RemoteLoader([s.endpoint for s in servers], connect_timeout=20)
        finally:
            for s in servers:
                s.close()
    same = [ThreadServer(_array_loader((j, 2)), fingerprint=base.replace(seed=j, workers=j).fingerprint())
            for j in range(2)]
    try:
        with RemoteLoader([s.endpoint for s in same], seed=0) as remote:
            assert len(copies(remote)) == 10
    finally:
        for s in same:
            s.close()


def test_fingerprint_helpers():
    assert portable_repr(type("X", (), {"__repr__": lambda self: "S('/a/b/train_lmdb', mean_file='m/mean.bp')"})()) \
        == "S('train_lmdb', mean_file='mean.bp')"
    assert "0x" not in portable_repr(object())
    assert first_difference({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 2]}) is None
    assert first_difference({"t": "C(scale=1.0, crop=3)"}, {"t": "C(scale=0.5, crop=3)"}) == ("t scale", "1.0", "0.5")
    assert first_difference({"t": "C(scale=1.0)"}, {"t": "D(scale=1.0)"}) == ("t", "C(scale=1.0)", "D(scale=1.0)")
    with pytest.raises(ValueError, match="JSON"):
        FeedServer(_array_loader((0, 1)), bind="tcp://127.0.0.1:*", fingerprint={"x": float("nan")})
    with pytest.raises(ValueError, match="mapping"):
        FeedServer(_array_loader((0, 1)), bind="tcp://127.0.0.1:*", fingerprint=[("x", 1)])


# ----- bind errors --------------------------------------------------------------------------------------
def test_port_in_use_is_one_line_naming_the_endpoint(lmdbs, capsys, no_leaks):
    taken = ThreadServer(_array_loader((0, 1)))
    try:
        assert main(["serve", lmdbs[0], "--workers", "1", "--bind", taken.endpoint]) == 1
    finally:
        taken.close()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"cannot bind {taken.endpoint}" in err and "already in use" in err and "--bind" in err
    assert "Traceback" not in err and "ZMQError" not in err


def test_a_port_held_by_another_program_and_an_absent_address(capsys):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    endpoint = f"tcp://127.0.0.1:{holder.getsockname()[1]}"
    try:
        with pytest.raises(RemoteSetupError, match=f"cannot bind {re.escape(endpoint)}: .*already in use"):
            FeedServer(_array_loader((0, 1)), bind=endpoint)
    finally:
        holder.close()
    with pytest.raises(RemoteSetupError, match=r"cannot bind tcp://192\.0\.2\.1:5555: no network interface"):
        FeedServer(_array_loader((0, 1)), bind="tcp://192.0.2.1:5555", insecure=True)
    for bad in ("tcp://127.0.0.1", "bogus://x"):
        with pytest.raises(ValueError, match=f"endpoint '{bad}'.* tcp://HOST:PORT"):
            RemoteLoader([bad], connect_timeout=1)


def test_a_port_beyond_65535_is_refused_not_wrapped_around(lmdbs, capsys):
    """ZeroMQ takes tcp://HOST:99999 as port 34463 (modulo 65536): a server would listen elsewhere."""
    for bad in ("tcp://127.0.0.1:99999", "tcp://127.0.0.1:65536"):
        with pytest.raises(ValueError, match=f"endpoint '{re.escape(bad)}': port .* not in 0..65535"):
            FeedServer(_array_loader((0, 1)), bind=bad, insecure=True)
        with pytest.raises(ValueError, match="not in 0..65535"):
            RemoteLoader([bad], connect_timeout=1)
    assert main(["serve", lmdbs[0], "--workers", "0", "--bind", "tcp://127.0.0.1:70000"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "port 70000 is not in 0..65535" in err, err
    with pytest.raises(RemoteSetupError, match="no network interface"):
        FeedServer(_array_loader((0, 1)), bind="tcp://no-such-host.invalid:5555", insecure=True)
