"""The feedstock DataLayer inside the ``caffe train`` binary (skipped unless FEEDSTOCK_CAFFE_BIN names one).

Set FEEDSTOCK_CAFFE_BIN to a ``caffe`` / ``caffe.bin`` built with the Python layer (e.g. by
../shared/tools/build-caffe.sh) and run this file with the Python that binary embeds; pycaffe's
folder must be on PYTHONPATH. The binary does not see a virtual environment, so the test hands
it this interpreter's import path.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feedstock.caffe_pb import array_to_datum
from feedstock.writers import LmdbWriter

CAFFE_BIN = os.environ.get("FEEDSTOCK_CAFFE_BIN", "")
pytestmark = pytest.mark.skipif(not os.path.isfile(CAFFE_BIN), reason="FEEDSTOCK_CAFFE_BIN is not set")

NET = """
layer {{ name: "data" type: "Python" top: "data" top: "label"
  python_param {{ module: "feedstock.caffe_layer" layer: "DataLayer" param_str: "{param_str}" }} }}
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param {{ num_output: 8 kernel_size: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "conv" top: "conv" }}
layer {{ name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param {{ num_output: 4 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
"""
SOLVER = """net: "{net}"
base_lr: 0.05
momentum: 0.9
lr_policy: "fixed"
display: 10
max_iter: 60
snapshot_prefix: "{prefix}"
solver_mode: CPU
"""


def test_caffe_train_runs_the_data_layer(tmp_path: Path, no_leaks: None) -> None:
    # a learnable task: every pixel holds 60 * label (plus noise), so the loss must fall
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 64)
    images = (labels[:, None, None, None] * 60 + rng.integers(0, 20, (64, 1, 8, 8))).astype(np.uint8)
    db = str(tmp_path / "train_lmdb")
    with LmdbWriter(db) as w:
        for i in range(len(labels)):
            w.put_datum(i, f"{i}.png", array_to_datum(images[i], int(labels[i])))
    param_str = repr({"source": db, "batch_size": 16, "scale": 1 / 255, "shuffle": True, "seed": 1,
                      "workers": 2}).replace('"', '\\"')
    (tmp_path / "net.prototxt").write_text(NET.format(param_str=param_str))
    (tmp_path / "solver.prototxt").write_text(SOLVER.format(net=tmp_path / "net.prototxt",
                                                            prefix=tmp_path / "snap"))
    path = [str(Path(__file__).resolve().parents[2])] + [p for p in sys.path if p]
    env = dict(os.environ, GLOG_logtostderr="1", PYTHONPATH=os.pathsep.join(path))
    done = subprocess.run([CAFFE_BIN, "train", f"--solver={tmp_path / 'solver.prototxt'}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Optimization Done" in done.stderr
    losses = [float(x) for x in re.findall(r"Iteration \d+, loss = ([0-9.e+-]+)", done.stderr)]
    assert len(losses) >= 6 and losses[-1] < 0.5 * losses[0], losses
    assert (tmp_path / "snap_iter_60.caffemodel").is_file()
