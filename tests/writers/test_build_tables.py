"""build-lmdb from tables: Otto-style CSV and HDF5 rows become float Datums (unpacked float_data)."""
from __future__ import annotations

import h5py
import numpy as np
from test_build_helpers import cli_output, parse_datum_wire, read_db

from feedstock.caffe_pb import read_mean_file
from feedstock.fixtures.synthetic import make_otto_csv
from feedstock.loaders import CaffeLmdb

FLOAT_HEAD = [0x08, 0x10, 0x18, 0x28]  # C, H, W, label (field 5); then one 0x35 per float (field 6), encoded


def build(*args):
    code, out, err = cli_output(["build-lmdb", *args, "--quiet", "--workers", "0"])
    assert code == 0, err
    return out


def test_otto_csv_rows_become_float_datums_of_shape_f11(tmp_path):
    counts, labels = make_otto_csv(str(tmp_path / "train.csv"), np.random.default_rng(0), rows=40, features=7)
    build(tmp_path / "train.csv", tmp_path / "db", "--label-column", "target")
    records = read_db(tmp_path / "db")
    assert [k for k, _ in records] == [f"{i:08d}_{i + 1}".encode() for i in range(40)]  # %08d_<id>
    top = int(labels.max())  # Class_<k+1> -> code k by its number, whichever classes the file holds
    for row, (_key, value) in enumerate(records):
        fields = parse_datum_wire(value)
        assert fields["tags"] == FLOAT_HEAD + [0x35] * 7 + [0x38]  # float_data unpacked
        assert (fields["channels"], fields["height"], fields["width"]) == (7, 1, 1)
        assert fields["float_data"] == counts[row].astype(np.float32).tolist()
        assert fields["label"] == labels[row] and fields["encoded"] == 0
    source = CaffeLmdb(tmp_path / "db")
    np.testing.assert_array_equal(source[3]["data"], counts[3].astype(np.float32).reshape(7, 1, 1))
    assert (tmp_path / "db" / "labels.txt").read_text().split() == [f"Class_{k + 1}" for k in range(top + 1)]


def test_csv_val_split_and_mean(tmp_path):
    counts, labels = make_otto_csv(str(tmp_path / "t.csv"), np.random.default_rng(1), rows=60, features=4)
    build(tmp_path / "t.csv", tmp_path / "db", "--val-fraction", "0.2", "--mean")
    train = [parse_datum_wire(v) for _, v in read_db(tmp_path / "db" / "train_lmdb")]
    val = [parse_datum_wire(v) for _, v in read_db(tmp_path / "db" / "val_lmdb")]
    assert len(train) + len(val) == 60
    expected = np.mean([f["float_data"] for f in train], axis=0).reshape(4, 1, 1)
    np.testing.assert_allclose(read_mean_file(tmp_path / "db" / "mean.binaryproto"), expected, rtol=1e-6)


def test_hdf5_file_rows_become_float_datums(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.normal(size=(5, 2, 3, 4)).astype(np.float32)
    label = np.arange(5, dtype=np.float32).reshape(5, 1) * 2
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"], f["label"] = data, label
    build(tmp_path / "d.h5", tmp_path / "db")
    records = read_db(tmp_path / "db")
    assert [k for k, _ in records] == [f"{i:08d}".encode() for i in range(5)]  # unnamed rows: %08d
    for i, (_key, value) in enumerate(records):
        fields = parse_datum_wire(value)
        assert fields["tags"] == FLOAT_HEAD + [0x35] * 24 + [0x38]
        assert (fields["channels"], fields["height"], fields["width"]) == (2, 3, 4)
        np.testing.assert_array_equal(np.float32(fields["float_data"]), data[i].ravel())
        assert fields["label"] == 2 * i
    source = CaffeLmdb(tmp_path / "db")
    np.testing.assert_array_equal(source[4]["data"], data[4])
    assert int(source[4]["label"]) == 8


def test_hdf5_rejects_image_options_and_fractional_labels(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"], f["label"] = np.zeros((2, 3), np.float32), np.array([0.5, 1.0], np.float32)
    code, _, err = cli_output(["build-lmdb", tmp_path / "d.h5", tmp_path / "db", "-q", "--workers", "0", "--strict"])
    assert code == 1 and "not an integer" in err
    code, _, err = cli_output(["build-lmdb", tmp_path / "d.h5", tmp_path / "db", "-q", "--gray"])
    assert code == 1 and "image sources only" in err


def test_caffe_hdf5_list_from_shared_data(tmp_path, shared_data):
    build(shared_data / "caffe-hdf5" / "sample_data_list.txt", tmp_path / "db")
    records = read_db(tmp_path / "db")
    assert len(records) == 20
    first = parse_datum_wire(records[0][1])
    assert (first["channels"], first["height"], first["width"]) == (8, 6, 5)
    assert first["float_data"] == list(range(240)) and first["label"] == 1  # data = arange, label 1..10
    eleventh = parse_datum_wire(records[10][1])  # second file: data = arange + 2400, uint8 labels
    assert eleventh["float_data"][0] == 2400.0 and eleventh["label"] == 1


def test_hdf5_labels_are_required_unless_no_labels_and_files_never_sit_in_the_output(tmp_path):
    (tmp_path / "out").mkdir()
    with h5py.File(tmp_path / "out" / "d.h5", "w") as f:
        f["data"], f["y"] = np.ones((3, 2), np.float32), np.arange(3, dtype=np.float32)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'out' / 'd.h5'}\n")
    code, _, err = cli_output(["build-lmdb", tmp_path / "list.txt", tmp_path / "out", "--force", "-q",
                               "--label-column", "y"])
    assert code == 1 and "lies in the output" in err and (tmp_path / "out" / "d.h5").is_file()
    code, _, err = cli_output(["build-lmdb", tmp_path / "out" / "d.h5", tmp_path / "db", "-q"])
    assert code == 1 and "label" in err  # no 'label' dataset: never all-0 labels by default
    build(tmp_path / "out" / "d.h5", tmp_path / "db", "--label-column", "y")
    assert [parse_datum_wire(v)["label"] for _, v in read_db(tmp_path / "db")] == [0, 1, 2]
    build(tmp_path / "out" / "d.h5", tmp_path / "none", "--no-labels")
    assert [parse_datum_wire(v)["label"] for _, v in read_db(tmp_path / "none")] == [0, 0, 0]


def test_hdf5_rows_with_bad_labels_go_to_skipped_txt_unless_strict(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["data"], f["label"] = np.ones((2, 2), np.float32), np.array([0, 1.5], np.float32)
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["data"], f["label"] = np.full((2, 2), 2, np.float32), np.array([np.nan, 3], np.float32)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.h5'}\n{tmp_path / 'b.h5'}\n")
    code, out, err = cli_output(["build-lmdb", tmp_path / "list.txt", tmp_path / "db", "-q", "--workers", "0"])
    assert code == 0, err
    records = read_db(tmp_path / "db")
    assert [k for k, _ in records] == [b"00000000", b"00000003"]  # line ids keep their gaps, as images'
    assert [parse_datum_wire(v).get("label", 0) for _, v in records] == [0, 3]
    skipped = [line.split("\t") for line in (tmp_path / "db" / "skipped.txt").read_text().splitlines()]
    assert [(s[1], s[3]) for s in skipped] == [("1", f"{tmp_path / 'a.h5'}:1: label 1.5 is not an integer"),
                                               ("2", f"{tmp_path / 'b.h5'}:0: label nan is not an integer")]
    assert "skipped 2" in out
    code, _, err = cli_output(["build-lmdb", tmp_path / "list.txt", tmp_path / "strict", "-q", "--strict"])
    assert code == 1 and "a.h5:1" in err and not (tmp_path / "strict").exists()
