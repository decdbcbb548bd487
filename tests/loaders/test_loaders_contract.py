"""The shared Source contract over every source type, in process and in fork/spawn children."""
from __future__ import annotations

import os

import cv2
import h5py
import numpy as np
import pytest
from _source_contract import check_child_process, check_contract, check_inherited_by_fork

from feedstock.fixtures.synthetic import make_encoded_lmdb, make_image_folder, make_otto_csv, make_raw_lmdb
from feedstock.loaders import CaffeLmdb, CsvTable, Hdf5, ImageFolder, ListFile, Pairs


def _hdf5_source(tmp) -> Hdf5:
    rng = np.random.default_rng(5)
    names = []
    for k, rows in enumerate((4, 3)):
        name = f"part{k}.h5"
        with h5py.File(tmp / name, "w") as f:
            f["data"] = rng.normal(size=(rows, 2, 3)).astype(np.float32)
            f["label"] = np.arange(rows, dtype=np.int32)
        names.append(name)
    (tmp / "list.txt").write_text("\n".join(names) + "\n")
    return Hdf5(tmp / "list.txt")


def _pairs_source(tmp) -> Pairs:
    rng = np.random.default_rng(6)
    (tmp / "images").mkdir()
    (tmp / "masks").mkdir()
    for k, (h, w) in enumerate(((8, 10), (9, 7), (6, 6))):
        cv2.imwrite(str(tmp / "images" / f"im{k}.jpg"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        cv2.imwrite(str(tmp / "masks" / f"im{k}.png"), rng.integers(0, 3, (h, w), dtype=np.uint8))
    return Pairs(tmp / "images", tmp / "masks")


def _build(name: str, tmp):
    rng = np.random.default_rng(len(name))
    if name == "image_folder":
        make_image_folder(str(tmp), rng, classes=("b", "a"), per_class=3)
        return ImageFolder(tmp)
    if name == "list_file":
        pairs = make_image_folder(str(tmp / "imgs"), rng, per_class=2, ext=".jpg")
        lines = [f"{os.path.relpath(p, tmp)} {label}" for p, label in pairs]
        (tmp / "list.txt").write_text("\n".join(lines) + "\n")
        return ListFile(tmp / "list.txt", root=str(tmp) + "/", color=False)
    if name == "csv_table":
        make_otto_csv(str(tmp / "t.csv"), rng, rows=40, features=6)
        return CsvTable(tmp / "t.csv")
    if name == "lmdb_raw":
        make_raw_lmdb(str(tmp / "db"), rng, 12, (3, 5, 4))
        return CaffeLmdb(tmp / "db")
    if name == "lmdb_float":
        make_raw_lmdb(str(tmp / "db"), rng, 5, (2, 3, 3), dtype=np.float32)
        return CaffeLmdb(tmp / "db")
    if name == "lmdb_encoded":
        images = [rng.integers(0, 256, (6 + k, 5, 3), dtype=np.uint8) for k in range(4)]
        make_encoded_lmdb(str(tmp / "db"), images, [1, 0, 1, 2])
        return CaffeLmdb(tmp / "db", mode="color")
    if name == "hdf5":
        return _hdf5_source(tmp)
    if name == "pairs":
        return _pairs_source(tmp)
    raise AssertionError(name)


KINDS = ["image_folder", "list_file", "csv_table", "lmdb_raw", "lmdb_float", "lmdb_encoded", "hdf5", "pairs"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return {name: _build(name, tmp_path_factory.mktemp(name)) for name in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_contract_in_process(sources, kind):
    check_contract(sources[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_contract_fork_child(sources, kind, no_leaks):
    check_child_process([sources[kind]], "fork")


@pytest.mark.parametrize("kind", KINDS)
def test_contract_inherited_by_fork(sources, kind, no_leaks):
    check_inherited_by_fork(sources[kind])


def test_contract_spawn_child(sources, no_leaks):
    # One spawned interpreter for all kinds: a spawn start costs seconds on two cores.
    check_child_process([sources[k] for k in KINDS], "spawn")
