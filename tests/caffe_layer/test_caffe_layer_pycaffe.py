"""The layers inside a real pycaffe Net and SGDSolver (skipped where Caffe's Python module is not installed)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")  # Caffe's glog chatter, before it loads
caffe = pytest.importorskip("caffe")

from feedstock.caffe_layer import DataLayer, OccludeLayer, close_layers  # noqa: E402
from feedstock.fixtures.synthetic import make_raw_lmdb  # noqa: E402

NET = """
name: "tiny"
layer {{
  name: "data" type: "Python" top: "data" top: "label"
  include {{ phase: TRAIN }}
  python_param {{
    module: "feedstock.caffe_layer" layer: "DataLayer"
    param_str: "{param_str}"
  }}
}}
layer {{
  name: "occlude" type: "Python" bottom: "data" top: "occluded"
  python_param {{ module: "feedstock.caffe_layer" layer: "OccludeLayer" param_str: "{{'seed': 3}}" }}
}}
layer {{
  name: "ip" type: "InnerProduct" bottom: "occluded" top: "ip"
  inner_product_param {{ num_output: 5 weight_filler {{ type: "gaussian" std: 0.01 }} }}
}}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
"""

SOLVER = """
net: "{net}"
base_lr: 0.01
lr_policy: "fixed"
max_iter: 100
snapshot_prefix: "{prefix}"
solver_mode: CPU
"""


@pytest.fixture()
def solver_file(tmp_path):
    db = str(tmp_path / "train_lmdb")
    images, labels = make_raw_lmdb(db, np.random.default_rng(0), 10, (3, 8, 10), classes=5)
    param_str = repr({"source": db, "batch_size": 4, "workers": 2, "seed": 1}).replace('"', '\\"')
    (tmp_path / "net.prototxt").write_text(NET.format(param_str=param_str))
    (tmp_path / "solver.prototxt").write_text(
        SOLVER.format(net=tmp_path / "net.prototxt", prefix=tmp_path / "snap"))
    return str(tmp_path / "solver.prototxt"), images, labels


def one_block_blank(x: np.ndarray, y: np.ndarray, top: int, left: int) -> bool:
    """True when y is x with the 4x5 block at (top, left) zeroed in every channel."""
    expected = x.copy()
    expected[:, top : top + 4, left : left + 5] = 0
    return bool(np.array_equal(y, expected))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except FileNotFoundError:
        return False


def batches(solver, n: int) -> list:
    out = []
    for _ in range(n):
        solver.step(1)
        out.append((solver.net.blobs["data"].data.copy(), solver.net.blobs["label"].data.copy()))
    return out


def test_solver_runs_the_layers_and_resumes(solver_file, tmp_path, no_leaks):
    path, images, labels = solver_file
    caffe.set_mode_cpu()
    solver = caffe.SGDSolver(path)
    layer = solver.net.layers[0]
    assert isinstance(layer, DataLayer) and isinstance(solver.net.layers[1], OccludeLayer)
    seen = batches(solver, 3)
    idx = np.arange(12) % 10  # Caffe's wrap-around: the third batch is records 8, 9, 0, 1
    np.testing.assert_array_equal(np.concatenate([d for d, _ in seen]), images[idx])
    np.testing.assert_array_equal(np.concatenate([lab for _, lab in seen]), labels[idx].astype(np.float32))
    data, occluded = solver.net.blobs["data"].data, solver.net.blobs["occluded"].data
    for x, y in zip(data, occluded):  # one (H/2, W/2) block zeroed per item, the rest untouched
        assert sum(one_block_blank(x, y, top, left) for top in range(4) for left in range(5)) >= 1
    layer.save_state(tmp_path / "snap.data.json")
    expected = batches(solver, 3)
    pids = layer._feed._loader.worker_pids()
    assert len(pids) == 2 and all(alive(p) for p in pids)
    # pycaffe never frees Python layers (C++ holds a reference to them): close explicitly.
    assert close_layers(solver.net) == 1
    assert not any(alive(p) for p in pids)
    del layer, solver
    resumed = caffe.SGDSolver(path)
    resumed.net.layers[0].restore_state(tmp_path / "snap.data.json")
    got = batches(resumed, 3)
    for (a, la), (b, lb) in zip(expected, got):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    close_layers(resumed.net)


EXIT_SCRIPT = """
import json, os
os.environ["GLOG_minloglevel"] = "2"
import caffe
caffe.set_mode_cpu()
solver = caffe.SGDSolver({path!r})
solver.step(2)
print(json.dumps(solver.net.layers[0]._feed._loader.worker_pids()))
"""  # exits with the solver alive: the layer's atexit finalizer must stop the pool


def test_process_exit_with_a_live_solver_leaves_nothing(solver_file, no_leaks):
    proc = subprocess.Popen([sys.executable, "-c", EXIT_SCRIPT.format(path=solver_file[0])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=os.path.dirname(solver_file[0]))
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    pids = json.loads(out.strip().splitlines()[-1])
    deadline = time.monotonic() + 30  # ends as soon as they are gone (a busy machine is slow)
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    assert len(pids) == 2 and not any(alive(p) for p in pids)
    # that process's entries only: test runs beside this one have their own
    assert [n for n in os.listdir("/dev/shm") if n.startswith(f"feedstock_{proc.pid}_")] == []
