"""Otto from CSV to a Kaggle submission: CSV, the LMDB built from it, HDF5 in both Caffe layouts; predict."""
from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest

from feedstock.cli.main import main
from feedstock.fixtures.synthetic import make_otto_csv

ITERS = 8
CLASSES = [f"Class_{i}" for i in range(1, 10)]


@pytest.fixture(scope="module")
def otto(tmp_path_factory):
    """train.csv (240 rows), val.csv (90, labelled), test.csv (50, no labels), the LMDB and two HDF5 files."""
    d = tmp_path_factory.mktemp("otto")
    rng = np.random.default_rng(11)
    counts, labels = make_otto_csv(str(d / "train.csv"), rng, rows=240)
    make_otto_csv(str(d / "val.csv"), rng, rows=90)
    make_otto_csv(str(d / "test.csv"), rng, rows=50, with_target=False)
    assert main(["build-lmdb", str(d / "train.csv"), str(d / "otto_lmdb"), "--label-column", "target", "-q"]) == 0
    with h5py.File(d / "flat.h5", "w") as f:  # (N, 93) data, (N,) integer labels
        f["data"], f["label"] = counts.astype(np.float32), labels.astype(np.int64)
    with h5py.File(d / "caffe.h5", "w") as f:  # Caffe's layout: (N, 93, 1, 1) data, (N, 1) float labels
        f["data"], f["label"] = counts.astype(np.float32)[:, :, None, None], labels.astype(np.float32)[:, None]
    return d, counts, labels


def train_cli(source, out, *extra):
    argv = ["train", "--model", "otto_mlp", "--train", str(source), "--iters", str(ITERS), "--batch-size", "32",
            "--workers", "0", "--out", str(out), "-q", *extra]
    assert main(argv) == 0
    return np.load(out / f"otto_mlp_iter_{ITERS}.npz")


@pytest.fixture(scope="module")
def csv_weights(otto, tmp_path_factory):
    return train_cli(otto[0] / "train.csv", tmp_path_factory.mktemp("csv_run"), "--no-plots")


@pytest.mark.parametrize("route", ["otto_lmdb", "flat.h5", "caffe.h5"])
def test_every_route_trains_the_same_net_as_the_csv(otto, csv_weights, tmp_path, route):
    """The same records in the same order: LMDB float Datums (93,1,1) and both HDF5 layouts (labels (N,)
    and float (N, 1)) give bit-identical weights to the CSV after a few steps (same seed, same dropout)."""
    d, want = otto[0], csv_weights
    got = train_cli(d / route, tmp_path / "route", "--no-plots")
    names = [k for k in want.files if k.startswith("param/")]
    assert len(names) == 6
    for name in names:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"{route} {name}")
    # it did train: the weights moved from their initial values
    assert not np.array_equal(want["history/ip1/weight"], np.zeros_like(want["history/ip1/weight"]))


def test_csv_to_submission_with_validation_log_loss(otto, tmp_path, capsys):
    d, _, _ = otto
    out = tmp_path / "run"
    train_cli(d / "train.csv", out, "--val", str(d / "val.csv"))
    assert {p.name for p in out.glob("*.png")} == {f"otto_mlp_{n}.png" for n in ("curves", "filters", "net", "weights")}
    text = capsys.readouterr().out
    assert "test accuracy" in text and "log-loss" in text
    metrics = json.loads((out / "otto_mlp_metrics.json").read_text())
    assert metrics["task"] == "classification"
    assert set(metrics["test"]) >= {"loss", "accuracy", "log_loss"}
    assert len(metrics["test_curves"]["test_log_loss"]) == len(metrics["test_curves"]["test_iter"]) >= 1
    assert 0 < metrics["test"]["log_loss"] < 5
    snapshot = out / f"otto_mlp_iter_{ITERS}.npz"

    # The Kaggle file: test.csv has no target column; ids and class columns as in the input files.
    sub = tmp_path / "submission.csv"
    assert main(["predict", str(snapshot), str(d / "test.csv"), "--out", str(sub)]) == 0
    with open(sub) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id"] + CLASSES
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 51))
    probs = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert probs.shape == (50, 9) and (probs > 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-7)

    # A labelled file: the log-loss predict reports is Kaggle's, computed here from the written file.
    scored = tmp_path / "val_pred.csv"
    capsys.readouterr()
    assert main(["predict", str(snapshot), str(d / "val.csv"), "--out", str(scored)]) == 0
    assert "log-loss" in capsys.readouterr().out
    with open(scored) as f:
        written = np.array([[float(v) for v in r[1:]] for r in list(csv.reader(f))[1:]])
    with open(d / "val.csv") as f:
        truth = np.array([CLASSES.index(r["target"]) for r in csv.DictReader(f)])
    p = np.clip(written, 1e-15, 1 - 1e-15)
    p /= p.sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(len(truth)), truth]))
    reported = json.loads((tmp_path / "val_pred.metrics.json").read_text())
    assert reported["log_loss"] == pytest.approx(expected, rel=1e-7)
    assert reported["accuracy"] == pytest.approx(np.mean(written.argmax(axis=1) == truth))
    assert (tmp_path / "val_pred_confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_an_lmdb_and_an_hdf5_file_gives_one_row_per_record(otto, tmp_path):
    d, counts, labels = otto
    out = tmp_path / "run"
    train_cli(d / "otto_lmdb", out, "--no-plots")
    snapshot = out / f"otto_mlp_iter_{ITERS}.npz"
    for data, key in (("otto_lmdb", None), ("caffe.h5", "caffe.h5:0")):
        pred = tmp_path / f"{data}.csv"
        assert main(["predict", str(snapshot), str(d / data), "--out", str(pred)]) == 0
        with open(pred) as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["key", "predicted"] + CLASSES  # the LMDB's labels.txt names the classes
        assert len(rows) == 1 + len(labels)
        if key is not None:
            assert rows[1][0].endswith(key)
        probs = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
        assert [r[1] for r in rows[1:]] == [CLASSES[i] for i in probs.argmax(axis=1)]
    # LMDB and HDF5 hold the same records: the same probabilities
    with open(tmp_path / "otto_lmdb.csv") as a, open(tmp_path / "caffe.h5.csv") as b:
        pa = np.array([[float(v) for v in r[2:]] for r in list(csv.reader(a))[1:]])
        pb = np.array([[float(v) for v in r[2:]] for r in list(csv.reader(b))[1:]])
    np.testing.assert_allclose(pa, pb, rtol=1e-6)
