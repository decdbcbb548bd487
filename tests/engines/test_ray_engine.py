"""engine="ray" on a multi-node Ray test cluster (nodes of 1 CPU on this machine): the local Loader's bytes,
from whichever nodes make them, with nodes joining, leaving and dying mid-epoch; resume across engines.

One cluster (a 1-CPU head, this machine's "local cores", plus one 1-CPU node) serves the whole module;
a test that adds nodes removes them. Every test must leave no Ray object referenced by this driver;
the module must leave no process and no /dev/shm file.
"""
from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster
from ray_engine_helpers import (
    FAST_FAILURE,
    Slow,
    assert_no_new_shm,
    assert_no_process_left,
    assert_same,
    copies,
    quiet_ray_logs,
    ray_refs_held,
    shm_entries,
    wait_until,
)

from feedstock.engines import RayLoader
from feedstock.engines.ray_pool import SourceUnreadable
from feedstock.fixtures.synthetic import make_image_folder, make_otto_csv, make_raw_lmdb
from feedstock.loaders import CaffeLmdb
from feedstock.phase import TRAIN
from feedstock.pipeline.loader import Loader
from feedstock.stream import Stream
from feedstock.transforms import CaffeTransform

# The Caffe recipe: random crop and mirror in TRAIN, per-channel means.
RECIPE = dict(crop_size=20, mirror=True, mean_value=(104.0, 117.0, 123.0))


@pytest.fixture(scope="module")
def cluster():
    quiet_ray_logs()
    before = shm_entries()
    # the nodes' workers import this folder's helpers (the Slow transform) as the driver does
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(os.path.abspath(__file__)), path) if p)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                      "_system_config": FAST_FAILURE})
    try:
        c.add_node(num_cpus=1)
        ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        if path is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = path
        assert_no_process_left(os.getpid())
        assert_no_new_shm(before)


@pytest.fixture(autouse=True)
def no_ray_objects_left(cluster):
    yield
    assert wait_until(lambda: not ray_refs_held(ray), 5.0), f"Ray objects still referenced: {ray_refs_held(ray)}"
    # every actor of the test is gone: the CPUs they held are free again
    assert wait_until(lambda: ray.available_resources().get("CPU") == ray.cluster_resources().get("CPU"), 10.0), \
        (ray.available_resources(), ray.cluster_resources())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_engine")
    rng = np.random.default_rng(7)
    make_raw_lmdb(str(root / "raw_lmdb"), rng, 90, shape=(3, 24, 24))
    make_image_folder(str(root / "jpegs"), rng, classes=("a", "b", "c"), per_class=14, size=(26, 30), ext=".jpg")
    make_otto_csv(str(root / "table.csv"), rng, rows=150, features=12)
    return root


def local_batches(source, transforms, epochs=(0,), **kw):
    with Loader(source, transforms, workers=0, **kw) as loader:
        out = []
        for epoch in epochs:
            loader.set_epoch(epoch)
            out += copies(loader)
        return out


def test_raw_lmdb_same_batches_over_epochs_zero_copy(data):
    source = CaffeLmdb(str(data / "raw_lmdb"))
    kw = dict(batch_size=16, shuffle=True, seed=11, drop_last=False)
    want = local_batches(source, None, epochs=(0, 1), **kw)
    with RayLoader(source, None, **kw) as loader:
        got = []
        for _ in range(2):
            for batch in loader:
                # views of Ray's object store: no copy on this node, read-only
                assert not batch["data"].flags.owndata and not batch["data"].flags.writeable
                got.append({k: v.copy() for k, v in batch.items()})
        assert loader.state_dict()["epoch"] == 2
        assert sum(loader.stats()["batches_by_node"].values()) >= len(want)
    assert_same(got, want)
    with RayLoader(source, None, copy=True, **kw) as loader:
        batch = next(iter(loader))
        assert batch["data"].flags.writeable and batch["data"].flags.owndata


def test_jpeg_caffe_recipe_through_the_stream(data):
    stream = Stream(source=str(data / "jpegs"), batch_size=8, shuffle=True, seed=5, workers=0, **RECIPE)
    with stream.build_loader("train") as local:
        want = copies(local)
    ray_stream = stream.replace(engine="ray")
    with ray_stream.build_loader("train") as loader:
        assert isinstance(loader, RayLoader)
        got = copies(loader)
    assert_same(got, want)
    assert got[0]["data"].shape == (8, 3, 20, 20) and got[0]["data"].dtype == np.float32
    # the draws differ per epoch: the recipe is random, and the same randomness on both engines
    assert not np.array_equal(got[0]["data"], local_batches(stream.build_source(), stream.build_transforms(),
                                                              epochs=(1,), batch_size=8, seed=5)[0]["data"])


def test_csv_same_batches_with_a_short_last_batch(data):
    stream = Stream(source=str(data / "table.csv"), batch_size=32, shuffle=True, seed=3, drop_last=False,
                    workers=0)
    with stream.build_loader("train") as local:
        want = copies(local)
    with stream.replace(engine="ray").build_loader("train") as loader:
        got = copies(loader)
    assert_same(got, want)
    assert len(got[-1]["data"]) == 150 - 4 * 32


def epochs(loader, count):
    """Batches of ``count`` epochs in a row, one iterator."""
    for _ in range(count):
        yield from loader


def _elastic_loader(data, seconds=0.01):
    source = CaffeLmdb(str(data / "raw_lmdb"))
    transforms = [CaffeTransform(phase=TRAIN, **RECIPE), Slow(seconds)]
    kw = dict(batch_size=6, shuffle=True, seed=2, timeout=60.0)
    return source, transforms, kw


def test_a_node_added_mid_epoch_takes_work(cluster, data):
    source, transforms, kw = _elastic_loader(data)
    want = local_batches(source, [transforms[0], Slow(0)], epochs=range(12), **kw)
    node = None
    try:
        with RayLoader(source, transforms, **kw) as loader:
            it = iter(loader)
            got = copies(next(it) for _ in range(3))
            assert set(loader.stats()["batches_by_node"]) <= {n["NodeID"] for n in ray.nodes()}
            node = cluster.add_node(num_cpus=1)
            got += copies(it)
            for _ in range(11):  # until the new node has made batches (it joins within seconds)
                if loader.stats()["batches_by_node"].get(node.node_id):
                    break
                got += copies(loader)
            assert loader.stats()["batches_by_node"].get(node.node_id), loader.stats()
            assert loader.stats()["actors"] == 3
    finally:
        if node is not None:
            cluster.remove_node(node)
    assert_same(got, want[:len(got)])


@pytest.mark.parametrize("graceful", [True, False], ids=["removed", "killed"])
def test_a_node_leaving_mid_epoch_leaves_the_bytes_unchanged(cluster, data, graceful):
    source, transforms, kw = _elastic_loader(data)
    want = local_batches(source, [transforms[0], Slow(0)], epochs=range(60), **kw)
    node = cluster.add_node(num_cpus=1)
    try:
        cluster.wait_for_nodes()
        with RayLoader(source, transforms, **kw) as loader:
            it = epochs(loader, 60)  # more than the test reads
            got = copies([next(it)])
            while not loader.stats()["batches_by_node"].get(node.node_id):  # its actor is at work
                got += copies([next(it)])
            cluster.remove_node(node, allow_graceful=graceful)
            node = None
            got += copies(next(it) for _ in range(2 * len(loader)))  # on, past an epoch's end
            # Ray may notice a killed node only after some heartbeats, and the node's actor may have
            # had nothing in flight (a slow consumer): read on until the loss is seen, bounded.
            deadline = time.monotonic() + 120
            while not loader.stats()["actors_lost"] and time.monotonic() < deadline:
                got += copies([next(it)])
            stats = loader.stats()
        assert stats["actors_lost"] >= 1, stats  # and whatever it held was made again elsewhere:
    finally:
        if node is not None:
            cluster.remove_node(node)
    assert_same(got, want[:len(got)])


def test_resume_from_ray_into_local_and_back(data):
    source = CaffeLmdb(str(data / "raw_lmdb"))
    transforms = [CaffeTransform(phase=TRAIN, **RECIPE)]
    kw = dict(batch_size=8, shuffle=True, seed=9, drop_last=True)  # RayLoader's default, not the Loader's
    want = local_batches(source, transforms, epochs=(0, 1), **kw)
    n = len(want) // 2
    with RayLoader(source, transforms, **kw) as ray_loader:
        it = iter(ray_loader)
        got = copies(next(it) for _ in range(4))
        state = ray_loader.state_dict()
    with Loader(source, transforms, workers=1, **kw) as local:
        assert local.state_dict().keys() == state.keys()
        local.load_state_dict(state)
        got += copies(local)  # the rest of epoch 0
        it = iter(local)
        got += copies(next(it) for _ in range(2))
        state = local.state_dict()
    assert state["epoch"] == 1 and state["next_batch"] == 2
    with RayLoader(source, transforms, **dict(kw, seed=0)) as ray_loader:
        other = copies([next(iter(ray_loader))])  # batches of seed 0 are under way
        ray_loader.load_state_dict(state)  # the state's seed wins, as on the local Loader
        got += copies(ray_loader)
    assert not np.array_equal(other[0]["data"], want[0]["data"])
    assert n > 4
    assert_same(got, want)


def test_a_node_that_cannot_read_the_source_is_named_with_the_path(data, tmp_path):
    path = tmp_path / "gone_lmdb"
    shutil.copytree(data / "raw_lmdb", path)
    loader = RayLoader(CaffeLmdb(str(path)), None, batch_size=8)
    shutil.rmtree(path)  # readable here when the source was made, not where the actors run
    with loader, pytest.raises(SourceUnreadable) as err:
        next(iter(loader))
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "cannot read" in message and "node" in message


def test_a_record_error_names_the_record_after_the_good_batches(data):
    from feedstock.errors import WorkerError
    from feedstock.loaders import ArraySource

    arrays = {"data": np.arange(40, dtype=np.float32).reshape(20, 2), "label": np.arange(20)}
    source = ArraySource(**arrays)

    class FailOn13(Slow):
        def __call__(self, sample, rng):
            if int(sample["label"]) == 13:
                raise ValueError("bad record 13")
            return sample

    with RayLoader(source, [FailOn13(0)], batch_size=4, shuffle=False) as loader:
        it = iter(loader)
        first = copies(next(it) for _ in range(3))
        with pytest.raises(WorkerError, match="bad record 13"):
            next(it)
    assert [int(b["label"][0]) for b in first] == [0, 4, 8]


def test_the_caffe_data_layer_takes_engine_ray_from_its_param_str(data):
    from feedstock.caffe_params import build_loader, data_layer_params, parse_param_str

    param_str = f"{{'source': '{data / 'table.csv'}', 'batch_size': 16, 'shuffle': True, 'seed': 1, 'engine': 'ray'}}"
    params = data_layer_params(parse_param_str(param_str))
    local = data_layer_params(dict(parse_param_str(param_str), engine="local", workers=0))
    with build_loader(params, TRAIN, ("data", "label")) as loader, build_loader(local, TRAIN, ("data", "label")) as ref:
        assert isinstance(loader, RayLoader) and not isinstance(ref, RayLoader)
        assert_same(copies(loader), copies(ref))
