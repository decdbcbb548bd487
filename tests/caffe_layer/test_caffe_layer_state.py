"""DataLayer resume (save_state/restore_state, state_file) and shutdown (no processes, no /dev/shm left)."""
from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from caffe_blobs import make_layer

from feedstock.caffe_layer import DataLayer, OccludeLayer, close_layers
from feedstock.fixtures.synthetic import make_raw_lmdb
from feedstock.pipeline.shm import pid_alive

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("state") / "lmdb")
    make_raw_lmdb(path, np.random.default_rng(0), 10, (3, 8, 10))
    return path


def params(db: str, **extra) -> dict:
    # 10 records, batch 4: the loader's epochs are 4+4+2 rows, so layer batches straddle epochs.
    return {"source": db, "batch_size": 4, "shuffle": True, "crop_size": 6, "mirror": True, "seed": 9,
            "workers": 2, **extra}


def forwards(layer: DataLayer, top, n: int) -> list:
    out = []
    for _ in range(n):
        layer.reshape([], top)
        layer.forward([], top)
        out.append((top[0].data.copy(), top[1].data.copy()))
    return out


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (da, la), (db_, lb) in zip(a, b):
        np.testing.assert_array_equal(da, db_)
        np.testing.assert_array_equal(la, lb)


@pytest.mark.parametrize("before", [0, 1, 3, 5])
def test_restored_layer_continues_with_the_same_batches(db, tmp_path, before, no_leaks):
    state = tmp_path / "iter.data.json"
    a, top = make_layer(params(db))
    try:
        forwards(a, top, before)
        a.save_state(state)
        expected = forwards(a, top, 6)
    finally:
        a.close()
    b, top = make_layer(params(db, workers=0))  # another worker count: same batches
    try:
        b.restore_state(state)
        assert_same(forwards(b, top, 6), expected)
    finally:
        b.close()


def test_state_file_key_restores_at_setup_and_unseeded_runs_keep_their_seed(db, tmp_path, no_leaks):
    state = tmp_path / "snap.json"
    a, top = make_layer(params(db, seed=None))
    try:
        forwards(a, top, 3)  # ends mid-batch of the second epoch
        a.save_state(state)
        expected = forwards(a, top, 4)
    finally:
        a.close()
    saved = json.loads(state.read_text())
    assert saved["offset"] == 2 and saved["loader"]["epoch"] == 1 and saved["loader"]["next_batch"] == 0
    b, top = make_layer(params(db, seed=None, state_file=str(state)))  # its own fresh seed is replaced
    try:
        assert_same(forwards(b, top, 4), expected)
    finally:
        b.close()


def test_restore_rewinds_a_running_layer(db, tmp_path, no_leaks):
    a, top = make_layer(params(db))
    try:
        forwards(a, top, 2)
        a.save_state(tmp_path / "s.json")
        first = forwards(a, top, 5)
        a.restore_state(tmp_path / "s.json")
        assert_same(forwards(a, top, 5), first)
    finally:
        a.close()


def test_missing_state_file_starts_fresh_with_a_warning(db, tmp_path, caplog, no_leaks):
    with caplog.at_level(logging.WARNING, logger="feedstock.caffe_layer"):
        a, top = make_layer(params(db, workers=0, state_file=str(tmp_path / "none.json")))
    try:
        b, top_b = make_layer(params(db, workers=0))
        assert_same(forwards(a, top, 2), forwards(b, top_b, 2))
        b.close()
    finally:
        a.close()
    assert "does not exist yet" in caplog.text


def test_bad_state_is_refused(db, tmp_path, no_leaks):
    a, top = make_layer(params(db, workers=0))
    a.save_state(tmp_path / "s.json")
    a.close()
    b, top = make_layer(params(db, workers=0, batch_size=5))
    try:
        with pytest.raises(ValueError, match="saved with batch_size=4"):
            b.restore_state(tmp_path / "s.json")
        (tmp_path / "junk.json").write_text("{not json")
        with pytest.raises(ValueError, match="not a DataLayer state file"):
            b.restore_state(tmp_path / "junk.json")
        with pytest.raises(ValueError, match="not a DataLayer state"):
            b.load_state_dict({"epoch": 1})
    finally:
        b.close()


def _ours(owner: int = 0) -> set:
    """/dev/shm entries of ``owner`` (default: this process); other runs beside this one have their own."""
    return {n for n in os.listdir("/dev/shm") if n.startswith(f"feedstock_{owner or os.getpid()}_")}


def test_deleting_the_layer_stops_the_pool(db, no_leaks):
    before = _ours()
    layer, top = make_layer(params(db))
    forwards(layer, top, 2)
    pids = layer._feed._loader.worker_pids()
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    assert _ours() - before  # the slots live in /dev/shm while the layer runs
    del layer  # as when Caffe deletes the net: no close() call
    gc.collect()
    assert not any(pid_alive(p) for p in pids)
    assert _ours() - before == set()


def test_closed_layer_refuses_forward(db, no_leaks):
    layer, top = make_layer(params(db, workers=1))
    layer.close()
    layer.close()
    with pytest.raises(RuntimeError, match="not set up \\(or was closed\\)"):
        layer.forward([], top)


SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from caffe_blobs import blobs
from feedstock.caffe_layer import DataLayer, OccludeLayer, close_layers
layer = DataLayer()
layer.param_str, layer.phase = {param_str!r}, 0
top = blobs(2)
layer.setup([], top)
layer.forward([], top)
print(json.dumps(layer._feed._loader.worker_pids()))
"""  # exits with the layer alive: the atexit path must clean up


def test_process_exit_without_close_leaves_nothing(db, no_leaks):
    script = SCRIPT.format(tests=str(ROOT / "tests"), param_str=repr(params(db)))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    pids = json.loads(out.strip().splitlines()[-1])
    assert len(pids) == 2
    deadline = time.monotonic() + 30  # ends as soon as they are gone (a busy machine is slow)
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in pids)
    assert _ours(proc.pid) == set()  # the owner exited without close(): its workers removed its files


def test_close_layers_stops_the_data_layers_of_a_net(db, no_leaks):
    layer, top = make_layer(params(db, workers=1))
    pids = layer._feed._loader.worker_pids()
    net = SimpleNamespace(layers=[layer, OccludeLayer()])  # pycaffe's net.layers: the layer objects
    assert close_layers(net) == 1 and close_layers(net) == 0
    assert not any(pid_alive(p) for p in pids)
