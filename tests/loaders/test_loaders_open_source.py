"""open_source / guess_kind: the source type from the look of a path."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from feedstock.fixtures.synthetic import make_image_folder, make_otto_csv, make_raw_lmdb
from feedstock.loaders import CaffeLmdb, CsvTable, Hdf5, ImageFolder, ListFile, guess_kind, open_source


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(0)
    make_raw_lmdb(str(tmp_path / "db"), rng, 2, (1, 2, 2))
    make_otto_csv(str(tmp_path / "t.csv"), rng, rows=5, features=3)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"] = np.zeros((2, 3), np.float32)
        f["label"] = np.zeros(2, np.float32)
    with h5py.File(tmp_path / "noext", "w") as f:
        f["data"] = np.zeros((1, 3), np.float32)
        f["label"] = np.zeros(1, np.float32)
    (tmp_path / "h5list.txt").write_text("d.h5\nd.h5\n")
    pairs = make_image_folder(str(tmp_path / "folder"), rng, per_class=1)
    (tmp_path / "train.txt").write_text("".join(f"{p} {label}\n" for p, label in pairs))
    (tmp_path / "other.txt").write_text("hello world\n")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.bin").write_bytes(b"x")
    return tmp_path


@pytest.mark.parametrize("name, kind, cls", [
    ("db", "lmdb", CaffeLmdb), ("db/data.mdb", "lmdb", CaffeLmdb), ("t.csv", "csv", CsvTable),
    ("d.h5", "hdf5", Hdf5), ("noext", "hdf5", Hdf5), ("h5list.txt", "hdf5", Hdf5),
    ("train.txt", "list", ListFile), ("folder", "folder", ImageFolder),
])
def test_guess_and_open(tree, name, kind, cls):
    assert guess_kind(str(tree / name)) == kind
    src = open_source(tree / name)
    assert type(src) is cls and len(src) > 0


def test_kwargs_pass_through(tree):
    src = open_source(tree / "folder", color=False)
    assert src[0]["data"].shape[0] == 1
    assert len(open_source(tree / "d.h5", fields=("data",)).spec()) == 1


@pytest.mark.parametrize("name, message", [
    ("other.txt", "cannot tell the format"), ("flat", "neither data.mdb"), ("missing", "does not exist"),
])
def test_unknown_paths(tree, name, message):
    with pytest.raises(ValueError, match=message):
        open_source(tree / name)
