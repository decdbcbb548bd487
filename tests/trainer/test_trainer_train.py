"""train() end to end on the bundled real Fashion-MNIST sample: accuracy, resume, workers, report, files."""
from __future__ import annotations

import numpy as np
import pytest

from feedstock.trainer.datasets import load_fashion_mnist
from feedstock.trainer.loop import step_seed, train
from feedstock.trainer.models import get_model, lenet, otto_mlp

LENET_SOLVER = {"base_lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005, "lr_policy": "inv",
                "gamma": 0.0001, "power": 0.75, "display": 0}


@pytest.fixture(scope="module")
def sample():
    return load_fashion_mnist()


def small(split, n):
    return split.images[:n], split.labels[:n]


def test_lenet_learns_real_fashion_mnist_sample(sample, tmp_path):
    train_split, test_split = sample
    # ~1.3 epochs over the 4000 bundled training images; chance is 10%.
    report = train("lenet", train_split, test_split, dict(LENET_SOLVER, max_iter=80, test_interval=40),
                   tmp_path, batch_size=64, workers=0, seed=1)
    assert report.iters == 80
    assert report.test_accuracy is not None and report.test_accuracy >= 0.6
    assert report.history["test_iter"] == [0, 40, 80]
    assert report.history["test_accuracy"][0] < 0.3 < report.history["test_accuracy"][-1]
    assert np.mean(report.history["train_loss"][-10:]) < np.mean(report.history["train_loss"][:10]) - 0.8
    # Per-epoch timing covers every training step exactly once.
    assert sum(e.steps for e in report.epochs) == 80
    assert [e.steps for e in report.epochs] == [62, 18]
    assert 0.0 <= report.data_wait_fraction < 1.0 and report.images_per_s > 0
    names = sorted(p.split("/")[-1] for p in report.files)
    assert names == ["lenet_curves.png", "lenet_filters.png", "lenet_metrics.json", "lenet_net.png",
                     "lenet_weights.png", "snapshot_iter_80.npz"]
    for path in report.files:
        if path.endswith(".png"):
            assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_bit_identically(sample, tmp_path):
    data = small(sample[0], 512)
    cfg = dict(LENET_SOLVER, max_iter=12, snapshot=6)
    full = train("lenet", data, None, cfg, tmp_path / "full", batch_size=32, seed=3, plots=False)
    half = train("lenet", data, None, dict(cfg, max_iter=6), tmp_path / "half", batch_size=32, seed=3, plots=False)
    resumed = train("lenet", data, None, cfg, tmp_path / "resumed", batch_size=32, seed=3, plots=False,
                    resume=tmp_path / "half" / "snapshot_iter_6.npz")
    assert resumed.iters == 12 and len(resumed.history["iter"]) == 6
    for name, value in full.net.state_dict().items():
        np.testing.assert_array_equal(resumed.net.state_dict()[name], value, err_msg=name)
    assert resumed.history["train_loss"] == full.history["train_loss"][6:]
    # A run that differs only in seed is not identical (the comparison can fail).
    other = train("lenet", data, None, dict(cfg, max_iter=6), None, batch_size=32, seed=4, plots=False)
    assert not np.array_equal(other.net.state_dict()["conv1/weight"], half.net.state_dict()["conv1/weight"])


def test_resume_with_dropout_is_identical_too(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.poisson(1.0, size=(300, 93)).astype(np.float32)
    y = rng.integers(0, 9, size=300)
    cfg = {"base_lr": 0.05, "momentum": 0.9, "max_iter": 10, "snapshot": 5, "display": 0}
    model = otto_mlp(hidden=(32, 16), dropout=0.5)
    full = train(model, (x, y), None, cfg, tmp_path / "a", batch_size=50, seed=7, plots=False)
    train(model, (x, y), None, dict(cfg, max_iter=5), tmp_path / "b", batch_size=50, seed=7, plots=False)
    resumed = train(model, (x, y), None, cfg, None, batch_size=50, seed=7, plots=False,
                    resume=tmp_path / "b" / "snapshot_iter_5.npz")
    for name, value in full.net.state_dict().items():
        np.testing.assert_array_equal(resumed.net.state_dict()[name], value, err_msg=name)
    assert step_seed(7, 3) != step_seed(7, 4)


def test_resume_refuses_a_different_seed(sample, tmp_path):
    data = small(sample[0], 128)
    train("lenet", data, None, dict(LENET_SOLVER, max_iter=2), tmp_path, batch_size=32, seed=1, plots=False)
    with pytest.raises(ValueError, match="seed"):
        train("lenet", data, None, dict(LENET_SOLVER, max_iter=4), None, batch_size=32, seed=2,
              plots=False, resume=tmp_path / "snapshot_iter_2.npz")


def test_loader_workers_feed_the_same_batches_as_in_process(sample, no_leaks, monkeypatch):
    # the thread budget gives the trainer's BLAS the cores the workers leave, and BLAS sums in an order
    # that depends on its thread count: the same weights for any worker count at a fixed count
    monkeypatch.setenv("FEEDSTOCK_TRAINER_THREADS", "1")
    data = small(sample[0], 640)
    cfg = dict(LENET_SOLVER, max_iter=12)
    inline = train("lenet", data, small(sample[1], 100), cfg, None, batch_size=64, workers=0, seed=5, plots=False)
    pooled = train("lenet", data, small(sample[1], 100), cfg, None, batch_size=64, workers=1, seed=5, plots=False)
    for name, value in inline.net.state_dict().items():
        np.testing.assert_array_equal(pooled.net.state_dict()[name], value, err_msg=name)
    assert pooled.test_accuracy == inline.test_accuracy
    assert [e.steps for e in pooled.epochs] == [10, 2]


def test_layer_spec_dict_model_and_model_errors():
    spec = {"name": "tiny", "input_shape": [4],
            "layers": [{"type": "InnerProduct", "num_output": 3, "weight_filler": {"type": "xavier"}}],
            "solver": {"base_lr": 0.5, "max_iter": 40, "display": 0}}
    x = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]] * 8, dtype=np.float32)
    y = np.array([0, 1, 2, 2] * 8)
    report = train(spec, (x, y), (x, y), batch_size=8, plots=False)
    assert report.model == "tiny" and report.test_accuracy == 1.0
    with pytest.raises(ValueError, match="model='vgg'"):
        get_model("vgg")
    with pytest.raises(ValueError, match="layers"):
        get_model({"input_shape": [3]})


def test_lenet_definition_matches_caffe_prototxt():
    m = lenet()
    kinds = [(spec["type"], spec.get("num_output"), spec.get("kernel_size")) for spec in m.layers]
    assert kinds == [("Convolution", 20, 5), ("Pooling", None, 2), ("Convolution", 50, 5), ("Pooling", None, 2),
                     ("InnerProduct", 500, None), ("ReLU", None, None), ("InnerProduct", 10, None),
                     ("SoftmaxWithLoss", None, None), ("Accuracy", None, None)]
    assert m.scale == 0.00390625 and m.input_shape == (1, 28, 28)
    s = m.solver
    assert (s.base_lr, s.momentum, s.weight_decay, s.lr_policy, s.gamma, s.power, s.max_iter) == \
        (0.01, 0.9, 0.0005, "inv", 0.0001, 0.75, 10000)
    net = m.build()
    assert [tuple(p.data.shape) for p in net.params] == [(20, 1, 5, 5), (20,), (50, 20, 5, 5), (50,),
                                                         (500, 800), (500,), (10, 500), (10,)]
    assert [p.lr_mult for p in net.params] == [1, 2, 1, 2, 1, 2, 1, 2]
