"""The remote feed end to end on loopback: same batches as the local Loader, resume, flow control, consumers."""
from __future__ import annotations

import time

import numpy as np
import pytest
from remote_helpers import ServeProcess, ThreadServer, assert_same_batches, copies, local_loader, serve_args

from feedstock import Loader
from feedstock.backend import get_backend
from feedstock.device import DeviceFeeder
from feedstock.fixtures.synthetic import make_raw_lmdb
from feedstock.loaders.array import ArraySource
from feedstock.pipeline.sampler import Sampler
from feedstock.remote import RemoteLoader


@pytest.fixture(scope="module")
def lmdb_src(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("remote") / "train_lmdb")
    make_raw_lmdb(path, np.random.default_rng(5), 61, shape=(3, 16, 16))
    return path


@pytest.fixture(scope="module")
def two_servers(lmdb_src):
    """`feedstock serve` processes for batch shards 0/2 and 1/2 of one epoch (started once: they take a second)."""
    servers = [ServeProcess(serve_args(lmdb_src, "--batch-shard", f"{j}/2")) for j in range(2)]
    yield servers
    for s in servers:
        assert s.stop() == 0, "\n".join(s.lines)


@pytest.mark.parametrize("length,batch,drop_last,n", [(103, 10, False, 3), (103, 10, True, 3), (100, 10, False, 4),
                                                       (95, 7, False, 2), (41, 10, False, 2), (9, 4, False, 1)])
def test_parts_interleave_to_the_whole_stream(length, batch, drop_last, n):
    whole = Sampler(length, batch_size=batch, seed=1, drop_last=drop_last, shard=(1, 2))
    parts = [Sampler(length, batch_size=batch, seed=1, drop_last=drop_last, shard=(1, 2), batch_shard=(j, n))
             for j in range(n)]
    for g in range(whole.num_batches):
        part, k = parts[g % n], g // n
        np.testing.assert_array_equal(part.batch(4, k), whole.batch(4, g))
        assert part.batch_rows(k) == whole.batch_rows(g)
    assert sum(p.num_batches for p in parts) == whole.num_batches
    assert sum(p.shard_size for p in parts) == whole.shard_size


def test_a_batch_shard_without_batches_is_refused():
    with pytest.raises(ValueError, match="batch shard 2/3 gets none of the 2 batches"):
        Sampler(20, batch_size=10, batch_shard=(2, 3))
    with pytest.raises(ValueError, match="batch_shard=3/3"):
        Sampler(20, batch_size=10, batch_shard=(3, 3))


def test_two_servers_give_the_local_loaders_batches(lmdb_src, two_servers):
    with local_loader(serve_args(lmdb_src)) as local:
        want = [copies(local) for _ in range(2)]
    # endpoints in either order: the parts, not the list, decide who serves which batch
    with RemoteLoader([s.endpoint for s in reversed(two_servers)]) as remote:
        assert len(remote) == 8 and remote.spec["data"].shape == (3, 12, 12)
        for epoch in range(2):
            assert_same_batches(copies(remote), want[epoch])
        assert remote.state_dict() == dict(local.state_dict(), epoch=2, next_batch=0)
        stats = remote.stats()
        assert stats["batches"] == 16 and stats["samples"] == 2 * 61
        assert remote.spec["data"].dtype == np.float32
        assert stats["bytes"] == 2 * 61 * (3 * 12 * 12 * 4 + remote.spec["label"].dtype.itemsize)


def test_one_server_serves_the_same_stream(lmdb_src):
    server = ServeProcess(serve_args(lmdb_src))
    try:
        with local_loader(serve_args(lmdb_src)) as local, RemoteLoader([server.endpoint]) as remote:
            assert_same_batches(copies(remote), copies(local))
    finally:
        assert server.stop() == 0


def test_resume_from_remote_and_from_local_state(lmdb_src, two_servers):
    eps = [s.endpoint for s in two_servers]
    with local_loader(serve_args(lmdb_src)) as local:
        local.set_epoch(3)
        want = copies(local)
        local.set_epoch(3)
        copies(local, limit=3)
        local_state = local.state_dict()
    with RemoteLoader(eps) as remote:
        remote.set_epoch(3)
        copies(remote, limit=5)
        state = remote.state_dict()
    assert state["epoch"] == 3 and state["next_batch"] == 5
    with RemoteLoader(eps) as remote:
        remote.load_state_dict(state)
        assert_same_batches(copies(remote), want[5:])
        remote.load_state_dict(local_state)  # a local checkpoint continues remotely
        assert_same_batches(copies(remote), want[3:])


def test_another_seed_is_served_on_request(lmdb_src, two_servers):
    with local_loader(serve_args(lmdb_src), seed=99) as local:
        want = copies(local)
    with RemoteLoader([s.endpoint for s in two_servers], seed=99) as remote:
        assert_same_batches(copies(remote), want)


def _array_loader(n=40, batch=4, **kw):
    data = np.arange(n * 6, dtype=np.uint8).reshape(n, 6)
    kw = {"drop_last": True, **kw}  # the Loader default these tests were written for
    return Loader(ArraySource(data=data, label=np.arange(n, dtype=np.int64)), batch_size=batch, workers=0,
                  shuffle=False, **kw)


def test_credits_bound_what_a_slow_consumer_is_sent():
    server = ThreadServer(_array_loader())
    try:
        with RemoteLoader([server.endpoint], prefetch=3) as remote:
            it = iter(remote)
            first = next(it)
            time.sleep(0.5)  # a slow training step: the server must stop at the client's buffers
            assert server.server.sent == 3
            assert remote.report()["servers"][0]["received"] == 3
            assert first["label"].tolist() == [0, 1, 2, 3]
            rest = [b["label"].tolist() for b in it]
            assert rest == [[4 * k + i for i in range(4)] for k in range(1, 10)]
            time.sleep(0.3)
            # streaming goes on into the next epoch, still bounded: 10 consumed, 1 held, 3 buffers
            assert server.server.sent <= 10 + 3
    finally:
        server.close()


def test_receive_buffers_are_fixed_and_batches_views_of_them():
    server = ThreadServer(_array_loader())
    try:
        with RemoteLoader([server.endpoint], prefetch=2) as remote:
            slots = remote.slot_arrays()
            assert len(slots) == 2 and slots[0]["data"].shape == (4, 6)
            addresses = {s["data"].ctypes.data for s in slots}
            for batch in remote:
                assert batch["data"].ctypes.data in addresses
                np.testing.assert_array_equal(batch["data"][:, 0], batch["label"] * 6)
    finally:
        server.close()


def test_short_last_batch_and_copy_mode():
    server = ThreadServer(_array_loader(n=10, drop_last=False))
    try:
        with RemoteLoader([server.endpoint], copy=True) as remote:
            batches = list(remote)
        assert [b["label"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        assert batches[-1]["data"].shape == (2, 6)
    finally:
        server.close()


def test_device_feeder_reads_a_remote_loader():
    """The device path takes a RemoteLoader as it takes a Loader (numpy backend here; pinned slots on GPUs)."""
    server = ThreadServer(_array_loader())
    try:
        feeder = DeviceFeeder(get_backend("numpy"), mean=1.0, scale=0.5)
        with RemoteLoader([server.endpoint]) as remote:
            out = copies(feeder.feed(remote, slots=remote.slot_arrays))
        with _array_loader() as local:
            want = copies(feeder.feed(local, slots=local.slot_arrays))
        assert len(out) == 10
        for a, b in zip(out, want):
            np.testing.assert_array_equal(a["data"], b["data"])
            np.testing.assert_array_equal(a["label"], b["label"])
        np.testing.assert_array_equal(out[0]["data"][0], (np.arange(6) - 1.0) * 0.5)
    finally:
        server.close()


def test_caffe_data_layer_reads_a_remote_feed(lmdb_src, two_servers):
    """param_str 'remote': the layer's rows are the local layer's rows (any batch size: rows are a stream)."""
    from caffe_blobs import make_layer, run_forwards

    remote, rtop = make_layer({"remote": [s.endpoint for s in two_servers], "batch_size": 5})
    local, ltop = make_layer({"source": lmdb_src, "batch_size": 5, "crop_size": 12, "mirror": True, "shuffle": True,
                         "seed": 7, "mean_value": [10, 20, 30], "scale": 0.5, "workers": 0})
    try:
        got, want = run_forwards(remote, rtop, 30), run_forwards(local, ltop, 30)  # 150 rows: two epoch ends
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    finally:
        remote.close()
        local.close()


def test_caffe_layer_remote_keeps_server_settings_on_the_server():
    from feedstock.caffe_params import data_layer_params

    with pytest.raises(ValueError, match=r"\['crop_size'\] are the servers' settings"):
        data_layer_params({"remote": ["tcp://127.0.0.1:5555"], "batch_size": 4, "crop_size": 3})
    p = data_layer_params({"remote": "tcp://127.0.0.1:5555", "batch_size": 4, "seed": 3})
    assert p.remote == ("tcp://127.0.0.1:5555",) and p.stream.source == ""
    with pytest.raises(ValueError, match="missing keys \\['source'\\]"):
        data_layer_params({"batch_size": 4})


def test_zero_copy_batches_are_views_of_the_received_frames():
    server = ThreadServer(_array_loader(n=10, drop_last=False))
    try:
        with RemoteLoader([server.endpoint], zero_copy=True) as remote:
            assert remote.slot_arrays() == []  # nothing fixed to pin
            got = []
            for b in remote:
                assert not b["data"].flags.owndata
                got.append(b["label"].tolist())
                np.testing.assert_array_equal(b["data"][:, 0], b["label"] * 6)
        assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    finally:
        server.close()


def test_the_trainer_trains_the_same_net_on_a_remote_feed(tmp_path):
    """LeNet fed by `feedstock serve` ends with the weights a local LMDB gives (same seed, same batches)."""
    from feedstock.loaders import CaffeLmdb
    from feedstock.trainer.loop import train

    path = str(tmp_path / "digits_lmdb")
    make_raw_lmdb(path, np.random.default_rng(9), 80, shape=(1, 28, 28))
    server = ServeProcess([path, "--shuffle", "--drop-last", "--batch-size", "16", "--workers", "1"])
    try:
        kw = dict(iters=7, batch_size=16, seed=3, backend="numpy", plots=False)
        remote = train("lenet", RemoteLoader([server.endpoint]), None, **kw)
        local = train("lenet", CaffeLmdb(path), None, **kw)
        from feedstock.cli.main import main

        assert main(["train", "--model", "lenet", "--remote", server.endpoint, "--batch-size", "16", "--iters", "2",
                     "--out", str(tmp_path / "run"), "-q"]) == 0
        assert (tmp_path / "run" / "lenet_iter_2.npz").is_file()
    finally:
        assert server.stop() == 0
    assert remote.iters == local.iters == 7
    want = local.net.state_dict()
    for name, value in remote.net.state_dict().items():
        np.testing.assert_array_equal(value, want[name], err_msg=name)
    assert remote.history == local.history


def test_training_needs_full_batches_of_its_size_from_the_feed():
    from feedstock.trainer.feeding import loader_batches

    server = ThreadServer(_array_loader(drop_last=False))
    try:
        with RemoteLoader([server.endpoint]) as remote:
            with pytest.raises(ValueError, match="batches of 4, training asks for 8"):
                loader_batches(remote, batch_size=8, seed=0)
            with pytest.raises(ValueError, match="--drop-last"):
                loader_batches(remote, batch_size=4, seed=0)
    finally:
        server.close()


def test_a_state_from_another_setup_is_refused_and_a_finished_epoch_rolls_over():
    server = ThreadServer(_array_loader())
    try:
        with RemoteLoader([server.endpoint]) as remote:
            state = remote.state_dict()
            with pytest.raises(ValueError, match="batch_size=8 but this loader has batch_size=4"):
                remote.load_state_dict(dict(state, batch_size=8))
            with pytest.raises(ValueError, match="next_batch=11 > 10"):
                remote.load_state_dict(dict(state, next_batch=11))
            remote.load_state_dict(dict(state, epoch=2, next_batch=10))
            assert (remote.epoch, remote.state_dict()["next_batch"]) == (3, 0)
    finally:
        server.close()
