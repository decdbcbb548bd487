"""Caffe layouts in the trainer: flattening into InnerProduct, (N,)/(N,1)/(N,1,1,1) labels, one-line errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feedstock.loaders import ArraySource
from feedstock.trainer.checks import flattens_input, input_reshape
from feedstock.trainer.loop import train
from feedstock.trainer.metrics import check_class_labels, multiclass_log_loss
from feedstock.trainer.models import lenet, otto_mlp

SOLVER = {"base_lr": 0.05, "momentum": 0.9, "max_iter": 4, "display": 0}
MLP = otto_mlp(hidden=(16,), dropout=0.0)


def table(n=40, features=93, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(1.0, size=(n, features)).astype(np.float32), rng.integers(0, 9, size=n)


def run(source, model=MLP, val=None, **kw):
    return train(model, source, val, SOLVER, None, batch_size=8, seed=1, plots=False, **kw)


def test_caffe_layouts_train_the_same_net():
    """(N, 93) with (N,) int labels == (N, 93, 1, 1) with (N, 1) float == with (N, 1, 1, 1) labels."""
    x, y = table()
    want = run(ArraySource(data=x, label=y)).net.state_dict()
    for data, label in ((x[:, :, None, None], y[:, None].astype(np.float32)),
                        (x[:, :, None, None], y[:, None, None, None]),
                        (x[:, None, :, None], y.astype(np.float64))):
        got = run(ArraySource(data=data, label=label)).net.state_dict()
        for name, value in want.items():
            np.testing.assert_array_equal(got[name], value, err_msg=f"{data.shape} {label.shape} {name}")


@pytest.mark.parametrize("data,label,message", [
    (np.zeros((16, 94), np.float32), np.zeros(16, np.int64),
     r"training data field 'data' \(batch shape \(8, 94\)\): records of shape \(94,\), the model takes \(93,\) "
     r"or any shape of 93 values"),
    (np.zeros((16, 93), np.float32), np.zeros((16, 2), np.int64),
     r"training data field 'label', batch 0: shape \(8, 2\), expected class labels \(N,\), \(N, 1\) or \(N, 1, 1, 1\)"),
    (np.zeros((16, 93), np.float32), np.array([0, 1, 2, 0.5] * 4, np.float32),
     r"training data record row \d+, field 'label': holds 0.5, expected an integer class label: fix that record's"),
    (np.zeros((16, 93), np.float32), np.array([0] * 10 + [9] + [0] * 5),
     r"training data record row 10, field 'label': holds 9, expected a class in \[0, 9\): fix that record's"),
])
def test_bad_layouts_are_one_line_errors_before_the_first_step(data, label, message):
    with pytest.raises(ValueError, match=message) as info:
        run(ArraySource(data=data, label=label))
    assert "\n" not in str(info.value)


def test_a_conv_net_does_not_flatten_and_fields_must_exist():
    x, y = table(16)
    with pytest.raises(ValueError, match=r"records of shape \(93, 1, 1\), the model takes \(1, 28, 28\)$"):
        run(ArraySource(data=x[:, :, None, None], label=y), model=lenet())
    with pytest.raises(ValueError, match=r"training data: batches have fields \['data'\], the model needs 'label'"):
        run(ArraySource(data=x))


def test_a_bad_validation_set_fails_before_training():
    x, y = table(16)
    bad = ArraySource(data=x, label=np.full(16, 12))
    with pytest.raises(ValueError, match=r"validation data record row 0, field 'label': holds 12"):
        run(ArraySource(data=x, label=y), val=bad, progress=lambda n: pytest.fail("trained before the check"))


def test_flattening_rule_follows_caffe_innerproduct():
    assert flattens_input(MLP.layers) and not flattens_input(lenet().layers)
    assert flattens_input([{"type": "ReLU"}, {"type": "InnerProduct", "num_output": 2}])
    assert input_reshape((93, 1, 1), (93,), True, "x") == (93,)
    assert input_reshape((93,), (93,), True, "x") is None
    with pytest.raises(ValueError, match=r"^x: records of shape \(3, 31\), the model takes \(93, 1\)$"):
        input_reshape((3, 31), (93, 1), False, "x")


def test_label_check_accepts_caffe_shapes_and_integral_floats():
    for labels in (np.array([0, 8]), np.array([[0.0], [8.0]]), np.zeros((2, 1, 1, 1), np.int32)):
        check_class_labels(labels, 9, "here")
    with pytest.raises(ValueError, match=r"^here: row 1 holds nan"):
        check_class_labels(np.array([1.0, np.nan]), 9, "here")
    with pytest.raises(ValueError, match=r"^here: dtype <U1, expected integer class labels$"):
        check_class_labels(np.array(["a", "b"]), 9, "here")


def test_multiclass_log_loss_is_kaggles_formula():
    probs = np.array([[1.0, 0.0, 0.0], [0.2, 0.2, 0.6], [0.0, 0.5, 0.5]])
    labels = np.array([0, 2, 0])
    # row 0: clipped to 1 - 1e-15 and renormalised -> ~1e-15 loss; row 2: p = 1e-15 / (1 + 1e-15)
    expected = -(np.log((1 - 1e-15) / (1 - 1e-15 + 2e-15)) + np.log(0.6) + np.log(1e-15 / (1 + 1e-15))) / 3
    assert multiclass_log_loss(probs, labels) == pytest.approx(expected, rel=1e-12)


@pytest.fixture
def caffe_hdf5():
    folder = Path(__file__).resolve().parents[3] / "shared" / "data" / "caffe-hdf5"
    if not (folder / "sample_data_list.txt").is_file():
        pytest.skip("the shared Caffe HDF5 test data is absent")
    return folder


def test_caffes_own_hdf5_sample_trains_through_innerproduct_flattening(caffe_hdf5):
    """Caffe's test HDF5 pair: data (10, 8, 6, 5) into an InnerProduct, labels (10, 1) float32 and uint8."""
    import h5py

    model = {"name": "ip", "input_shape": [240], "layers": [
        {"type": "InnerProduct", "name": "ip", "num_output": 11, "weight_filler": {"type": "xavier"}}]}
    solver = {"base_lr": 1e-7, "max_iter": 6, "display": 0}
    got = train(model, str(caffe_hdf5 / "sample_data_list.txt"), None, solver, batch_size=5, plots=False)
    data, labels = [], []
    for name in ("sample_data.h5", "sample_data_2_gzip.h5"):
        with h5py.File(caffe_hdf5 / name, "r") as f:
            data.append(f["data"][:].reshape(10, 240))
            labels.append(f["label"][:].reshape(10).astype(np.int64))
    want = train(model, ArraySource(data=np.concatenate(data), label=np.concatenate(labels)), None, solver,
                 batch_size=5, plots=False)
    for name, value in want.net.state_dict().items():
        np.testing.assert_array_equal(got.net.state_dict()[name], value, err_msg=name)
