"""One flag vocabulary: build-lmdb's stream spellings and Caffe's aliases build the same database;
train's --test-interval and --snapshot-interval override the solver."""
from __future__ import annotations

import json

import numpy as np
import pytest

from feedstock.cli.main import main
from feedstock.fixtures.synthetic import make_image_folder
from feedstock.writers.build.output import iter_db


def test_build_lmdb_stream_spellings_and_caffe_aliases_build_the_same_records(tmp_path, capsys):
    make_image_folder(str(tmp_path / "img"), np.random.default_rng(0), per_class=3, size=(12, 16), ext=".png")
    (tmp_path / "list.txt").write_text("".join(f"{p.relative_to(tmp_path / 'img').as_posix()} {i % 2}\n"
                                               for i, p in enumerate(sorted((tmp_path / "img").rglob("*.png")))))
    stream = ["--source-type", "list", "--root-folder", f"{tmp_path / 'img'}/", "--new-height", "8",
              "--new-width", "10"]
    caffe = ["--kind", "list", "--root", f"{tmp_path / 'img'}/", "--resize-height", "8", "--resize-width", "10"]
    for name, flags in (("a", stream), ("b", caffe)):
        assert main(["build-lmdb", str(tmp_path / "list.txt"), str(tmp_path / name), *flags, "--workers", "0",
                     "-q"]) == 0, capsys.readouterr().err
    a, b = list(iter_db(str(tmp_path / "a"))), list(iter_db(str(tmp_path / "b")))
    assert len(a) == 6 and a == b
    from feedstock.loaders import CaffeLmdb

    assert CaffeLmdb(str(tmp_path / "a"))[0]["data"].shape == (3, 8, 10)  # the resize applied


def test_train_intervals_override_the_solver(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "lenet", "--iters", "4", "--test-interval", "2", "--snapshot-interval", "3",
                 "--batch-size", "8", "--workers", "0", "--out", str(out), "--no-plots", "-q"]) == 0
    metrics = json.loads((out / "lenet_metrics.json").read_text())
    assert metrics["test_curves"]["test_iter"] == [0, 2, 4]
    assert sorted(p.name for p in out.glob("*.npz")) == ["lenet_iter_3.npz", "lenet_iter_4.npz"]  # + the final one
    capsys.readouterr()
    assert main(["train", "--model", "lenet", "--iters", "2", "--test-interval", "-1", "-q"]) == 1
    assert "--test-interval -1 must be >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--test-interval", "--snapshot-interval"])
def test_train_interval_flags_take_numbers(flag, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--model", "lenet", flag, "often"])
    assert flag in capsys.readouterr().err
