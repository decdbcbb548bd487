"""``feedstock predict``: an image folder and an LMDB of the same digits agree; errors are one line."""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from feedstock.cli.demo import write_lmdb
from feedstock.cli.main import main
from feedstock.trainer.datasets import load_fashion_mnist
from feedstock.trainer.models import lenet
from feedstock.trainer.nn.solver import SGDSolver


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """24 bundled digits as a raw LMDB and as grey PNGs in class folders, and a LeNet snapshot (--gray)."""
    d = tmp_path_factory.mktemp("predict")
    tr, _ = load_fashion_mnist()
    images, labels = tr.images[:24], tr.labels[:24]
    write_lmdb(d / "lmdb", images, labels, "lmdb")
    for i, (img, label) in enumerate(zip(images, labels)):
        folder = d / "folder" / f"c{label}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:03d}.png"), img[0])
    assert main(["train", "--model", "lenet", "--train", str(d / "lmdb"), "--gray", "--iters", "2", "--batch-size", "8",
                 "--workers", "0", "--no-plots", "--out", str(d / "run"), "-q"]) == 0
    return d, labels


def read(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_folder_and_lmdb_of_the_same_images_predict_the_same(digits, tmp_path):
    d, labels = digits
    snapshot = d / "run" / "lenet_iter_2.npz"
    assert main(["predict", str(snapshot), str(d / "lmdb"), "--out", str(tmp_path / "lmdb.csv")]) == 0
    assert main(["predict", str(snapshot), str(d / "folder"), "--out", str(tmp_path / "folder.csv"),
                 "--batch-size", "5", "--workers", "1"]) == 0
    head, by_key = read(tmp_path / "lmdb.csv")
    assert head == ["key", "predicted", "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot"]  # the labels.txt of the training LMDB
    assert [r[0] for r in by_key] == [f"{i:08d}" for i in range(24)]
    _, by_path = read(tmp_path / "folder.csv")
    assert len(by_path) == 24
    for row in by_path:
        index = int(row[0].rsplit("/", 1)[1][:3])  # .../c<label>/<index>.png
        assert row[1] == by_key[index][1], row[0]
        # batches of 5 vs 256: BLAS may round the last bit differently
        np.testing.assert_allclose([float(v) for v in row[2:]], [float(v) for v in by_key[index][2:]], rtol=1e-5)
    probs = np.array([[float(v) for v in r[2:]] for r in by_key])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-7)
    assert (tmp_path / "folder_confusion.png").is_file()  # class folders are labels


def test_predict_errors_are_one_line(digits, tmp_path, capsys):
    d, _ = digits
    net = lenet().build()
    old = SGDSolver(net, lenet().solver).snapshot(tmp_path / "old.npz")  # no deploy record
    assert main(["predict", str(old), str(d / "lmdb")]) == 1
    assert capsys.readouterr().err.strip() == (f"feedstock predict: error: {old}: the snapshot has no deploy "
                                               "record (written by an older feedstock train)")
    assert main(["predict", str(d / "run" / "lenet_iter_2.npz"), str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("feedstock predict: error: ") and "nowhere" in err and "\n" not in err
    assert main(["predict", str(tmp_path / "missing.npz"), str(d / "lmdb")]) == 1
    assert "missing.npz: cannot read the snapshot (No such file or directory): check the path" in capsys.readouterr().err
