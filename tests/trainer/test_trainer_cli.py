"""``feedstock train`` end to end: LeNet from Caffe LMDBs of real images, the Otto MLP from CSV with predictions."""
from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest

from feedstock.caffe_pb import array_to_datum
from feedstock.cli import train as train_cli
from feedstock.fixtures.synthetic import make_otto_csv
from feedstock.trainer.datasets import load_fashion_mnist
from feedstock.writers.lmdb_writer import LmdbWriter


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="feedstock")
    train_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def write_lmdb(path, images, labels):
    with LmdbWriter(path) as w:
        for i, (img, label) in enumerate(zip(images, labels)):
            w.put_datum(i, None, array_to_datum(img, int(label)))


def test_train_lenet_from_lmdb_with_loader_workers(tmp_path, capsys, no_leaks):
    train_split, test_split = load_fashion_mnist()
    write_lmdb(str(tmp_path / "train_lmdb"), train_split.images[:640], train_split.labels[:640])
    write_lmdb(str(tmp_path / "val_lmdb"), test_split.images[:200], test_split.labels[:200])
    solver = tmp_path / "solver.yaml"
    solver.write_text("base_lr: 0.01\nmomentum: 0.9\nlr_policy: fixed\nmax_iter: 100\ndisplay: 0\n")
    rc = run_cli(["train", "--model", "lenet", "--train", str(tmp_path / "train_lmdb"), "--val",
                  str(tmp_path / "val_lmdb"), "--solver", str(solver), "--iters", "20", "--batch-size", "32",
                  "--workers", "1", "--out", str(tmp_path / "out"), "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "model lenet on numpy: 20 iterations of batch 32" in out
    assert "test accuracy" in out and "data wait" in out and "images/s" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".feedstock-output", "lenet_curves.png", "lenet_filters.png", "lenet_metrics.json", "lenet_net.png", "lenet_weights.png",
        "snapshot_iter_20.npz"]


def test_train_otto_mlp_with_holdout_and_predictions(tmp_path, capsys):
    rng = np.random.default_rng(0)
    make_otto_csv(str(tmp_path / "train.csv"), rng, rows=600)
    counts, _ = make_otto_csv(str(tmp_path / "test.csv"), rng, rows=50, with_target=False)
    pred = tmp_path / "pred.csv"
    rc = run_cli(["train", "--model", "otto_mlp", "--train", str(tmp_path / "train.csv"), "--holdout", "0.2",
                  "--iters", "30", "--workers", "0", "--test", str(tmp_path / "test.csv"), "--predict", str(pred),
                  "--out", str(tmp_path / "out"), "-q"])
    assert rc == 0
    assert f"wrote {pred}" in capsys.readouterr().out
    with open(pred) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id"] + [f"Class_{i}" for i in range(1, 10)]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 51))
    probs = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert probs.shape == (50, 9) and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("argv,message", [
    (["--model", "otto_mlp"], "--train is required"),
    (["--model", "lenet", "--predict", "x.csv"], "--predict needs --test"),
    (["--model", "lenet", "--iters", "0"], "--iters 0"),
    (["--model", "lenet", "--train", "nowhere"], "'nowhere' does not exist"),
])
def test_train_cli_errors_are_clear(argv, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        run_cli(["train", "--out", str(tmp_path)] + argv)
