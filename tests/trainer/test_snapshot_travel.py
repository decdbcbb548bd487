"""Snapshots carry everything by value: predict works from any folder after the training data and the
mean file are gone; CSV features are matched by column name; data without labels gets no metrics."""
from __future__ import annotations

import csv
import re
import shutil

import numpy as np
import pytest

from feedstock.caffe_pb import read_mean_file
from feedstock.cli.demo import write_lmdb
from feedstock.cli.main import main
from feedstock.fixtures.synthetic import make_otto_csv
from feedstock.trainer.datasets import load_fashion_mnist
from feedstock.trainer.deploy import load_deployment


def rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_a_snapshot_predicts_identically_after_its_training_folder_is_deleted(tmp_path, monkeypatch):
    lab = tmp_path / "lab"
    lab.mkdir()
    tr, _ = load_fashion_mnist()
    write_lmdb(lab / "train_lmdb", tr.images[:48], tr.labels[:48], "train")
    monkeypatch.chdir(lab)  # every path typed relative to the training folder, as a user would
    assert main(["compute-mean", "train_lmdb", "mean.binaryproto", "-q"]) == 0
    assert main(["train", "--model", "lenet", "--train", "train_lmdb", "--mean-file", "mean.binaryproto",
                 "--iters", "3", "--batch-size", "8", "--workers", "0", "--no-plots", "-q",
                 "--out", "run"]) == 0
    assert main(["predict", "run/lenet_iter_3.npz", "train_lmdb", "--out", "here.csv"]) == 0
    expected = rows(lab / "here.csv")
    mean = read_mean_file(lab / "mean.binaryproto")
    kept = tmp_path / "kept"
    kept.mkdir()
    shutil.copy(lab / "run" / "lenet_iter_3.npz", kept / "model.npz")
    shutil.copytree(lab / "train_lmdb", kept / "data_lmdb")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    shutil.rmtree(lab)  # the training folder, its mean file and its data are gone
    deploy, _ = load_deployment(kept / "model.npz")
    assert deploy.mean_from == "mean.binaryproto" and deploy.stream["mean_file"] is None
    np.testing.assert_array_equal(deploy.mean_image, mean)  # the values travel, not the path
    assert main(["predict", "../kept/model.npz", "../kept/data_lmdb", "--out", "there.csv"]) == 0
    got = rows(elsewhere / "there.csv")
    assert got == expected and len(got) == 49


@pytest.fixture(scope="module")
def otto(tmp_path_factory):
    d = tmp_path_factory.mktemp("otto")
    rng = np.random.default_rng(1)
    make_otto_csv(str(d / "train.csv"), rng, rows=200)
    make_otto_csv(str(d / "test.csv"), rng, rows=20)
    assert main(["train", "--model", "otto_mlp", "--train", str(d / "train.csv"), "--iters", "5", "--workers", "0",
                 "--no-plots", "-q", "--out", str(d / "run")]) == 0
    return d, next((d / "run").glob("*_iter_5.npz"))


def rewrite_columns(src, dst, order):
    table = rows(src)
    head = table[0]
    with open(dst, "w", newline="") as f:
        csv.writer(f).writerows([order] + [[r[head.index(c)] if c in head else "0" for c in order] for r in table[1:]])


def probabilities(path):
    return np.array([[float(v) for v in r[1:]] for r in rows(path)[1:]])


def test_csv_features_are_matched_by_name_not_position(otto, tmp_path):
    d, snapshot = otto
    head = rows(d / "test.csv")[0]  # id, feat_1..feat_93, target
    features = [c for c in head if c.startswith("feat_")]
    rewrite_columns(d / "test.csv", tmp_path / "reversed.csv", ["target"] + features[::-1] + ["id"])
    assert main(["predict", str(snapshot), str(d / "test.csv"), "--out", str(tmp_path / "a.csv")]) == 0
    assert main(["predict", str(snapshot), str(tmp_path / "reversed.csv"), "--out", str(tmp_path / "b.csv")]) == 0
    np.testing.assert_array_equal(probabilities(tmp_path / "a.csv"), probabilities(tmp_path / "b.csv"))
    assert load_deployment(snapshot)[0].features == tuple(features)


@pytest.mark.parametrize("change,named", [("missing", "feat_3"), ("extra", "feat_99")])
def test_a_missing_or_extra_feature_column_is_a_one_line_error(otto, tmp_path, capsys, change, named):
    d, snapshot = otto
    head = rows(d / "test.csv")[0]
    order = [c for c in head if c != "feat_3"] if change == "missing" else head + ["feat_99"]
    rewrite_columns(d / "test.csv", tmp_path / "changed.csv", order)
    assert main(["predict", str(snapshot), str(tmp_path / "changed.csv"), "--out", str(tmp_path / "p.csv")]) == 1
    err = capsys.readouterr().err.strip()
    assert named in err and "changed.csv" in err and "\n" not in err
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("labelled", [False, True])
def test_data_without_labels_gets_predictions_only(otto, tmp_path, capsys, labelled):
    d, snapshot = otto
    db = tmp_path / "db"
    flags = [] if labelled else ["--no-labels"]
    source = d / "test.csv"
    if not labelled:  # a file without its label column, as a test set comes
        rewrite_columns(source, tmp_path / "nolabel.csv", [c for c in rows(source)[0] if c != "target"])
        source = tmp_path / "nolabel.csv"
    assert main(["build-lmdb", str(source), str(db), "-q", "--workers", "0", *flags]) == 0
    capsys.readouterr()
    out = tmp_path / "pred.csv"
    assert main(["predict", str(snapshot), str(db), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert len(rows(out)) == 21
    scored = (tmp_path / "pred.metrics.json").exists(), (tmp_path / "pred_confusion.png").exists()
    if labelled:
        assert scored == (True, True) and re.search(r"accuracy \d", printed)
    else:
        assert scored == (False, False)
        assert "no labels" in printed and "--no-labels" in printed and not re.search(r"accuracy \d", printed)


def test_a_set_without_labels_neither_trains_nor_validates(otto, tmp_path, capsys):
    d, _ = otto
    rewrite_columns(d / "test.csv", tmp_path / "nolabel.csv", [c for c in rows(d / "test.csv")[0] if c != "target"])
    assert main(["build-lmdb", str(tmp_path / "nolabel.csv"), str(tmp_path / "db"), "-q", "--workers", "0",
                 "--no-labels"]) == 0
    base = ["train", "--model", "otto_mlp", "--iters", "2", "--batch-size", "8", "--workers", "0", "--no-plots", "-q"]
    for argv in (["--train", str(tmp_path / "db"), "--out", str(tmp_path / "a")],
                 ["--train", str(d / "train.csv"), "--val", str(tmp_path / "db"), "--out", str(tmp_path / "b")]):
        assert main([*base, *argv]) == 1
        err = capsys.readouterr().err
        assert "no labels" in err and "--no-labels" in err and err.count("\n") == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
