"""One class mapping per CSV dataset: codes by class number or a given list, saved with the build and reused
for validation/test files; a missing label column is an error; on_error="skip" skips and lists bad rows."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from test_build_helpers import cli_output, parse_datum_wire, read_db

from feedstock.loaders import CsvTable
from feedstock.loaders.csv_classes import encode_labels, read_classes
from feedstock.writers.build.builder import BuildOptions, build_lmdb

OTTO = [f"Class_{k}" for k in range(1, 10)]


def write(path, header, rows, newline="\n"):
    path.write_bytes((newline.join([header, *rows]) + newline).encode())
    return path


def db_labels(db) -> list:
    return [parse_datum_wire(v)["label"] for _, v in read_db(db)]


def test_codes_follow_the_class_number_not_the_classes_present(tmp_path):
    val = write(tmp_path / "val.csv", "id,f,target", ["1,0.5,Class_3", "2,1,Class_7", "3,2,Class_3"])
    table = CsvTable(val)
    assert table.labels.tolist() == [2, 6, 2]  # Class_1 absent: Class_3 is still class 2
    assert table.classes == OTTO[:7]
    ten = write(tmp_path / "ten.csv", "f,target", ["1,Class_10", "2,Class_2"])
    assert CsvTable(ten).labels.tolist() == [9, 1] and CsvTable(ten).classes[-1] == "Class_10"


def test_a_given_class_list_decides_and_outsiders_name_their_line(tmp_path):
    val = write(tmp_path / "val.csv", "id,f,target", ["1,0.5,Class_3", "2,1,Class_9", "3,2,Class_10"])
    with pytest.raises(ValueError, match=r"val\.csv:4, column 3 \('target'\): class 'Class_10' is not one of "
                                         r"the 9 classes of the dataset \(Class_1\.\.Class_9\)"):
        CsvTable(val, classes=OTTO)
    ok = write(tmp_path / "ok.csv", "f,target", ["1,Class_03", "2,dog", "3,Class_9"])
    table = CsvTable(ok, classes=[*OTTO, "dog"])  # Class_03 is class number 3 of the list
    assert table.labels.tolist() == [2, 9, 8] and table.classes == [*OTTO, "dog"]
    assert CsvTable(write(tmp_path / "n.csv", "f,target", ["1,none", "2,x"]), classes=["x", "none"]).labels.tolist() \
        == [1, 0]  # a listed class is a class, even if spelled like a missing value
    unlabelled = write(tmp_path / "test.csv", "id,f", ["1,2"])
    assert CsvTable(unlabelled, classes=OTTO).classes == OTTO  # kept for naming predictions
    with pytest.raises(ValueError, match=r"duplicate class names \['a'\]"):
        CsvTable(ok, classes=["a", "b", "a"])
    with pytest.raises(ValueError, match=r"cannot read the class list .*nope.txt"):
        CsvTable(ok, classes=str(tmp_path / "nope.txt"))  # a path is a saved list (labels.txt), read here
    (tmp_path / "labels.txt").write_text("\n".join([*OTTO, "dog"]) + "\n")
    assert CsvTable(ok, classes=tmp_path / "labels.txt").labels.tolist() == [2, 9, 8]


@pytest.mark.parametrize("cells, codes, classes", [
    (["Class_01", "Class_03", "Class_10"], [0, 2, 9], [f"Class_{k:02d}" for k in range(1, 11)]),
    (["Class_0", "Class_2"], [0, 2], ["Class_0", "Class_1", "Class_2"]),
    (["Class_1", "Class_01"], [0, 0], ["Class_1"]),  # one number, one class
    (["a_1", "b_2", "a_3"], [0, 2, 1], ["a_1", "a_3", "b_2"]),  # mixed prefixes: names in natural order
    (["cat", "dog"], [0, 1], ["cat", "dog"]),
    (["7", "-3"], [7, -3], None),
    (["v2_10", "v2_9"], [9, 8], [f"v2_{k}" for k in range(1, 11)]),
    (["3.0", "1"], [3, 1], None),  # integers written by a float column
    (["True", "False"], [1, 0], ["False", "True"]),
])
def test_derived_mappings(cells, codes, classes):
    result = encode_labels(np.asarray(cells))
    assert result.codes.tolist() == codes and result.classes == classes and result.bad == []


@pytest.mark.parametrize("rows, message", [
    (["1,Class_1", "2,"], r"t\.csv:3, column 2 \('target'\): empty label"),
    (["1,Class_1", "2,NaN"], r"t\.csv:3, column 2 \('target'\): missing label 'NaN'"),
    (["1,3", "2,nan", "3,x"], r"t\.csv:3, column 2 \('target'\): missing label 'nan' \(and 1 more"),
    (["1,3", "2,Class_3"], r"t\.csv:3, column 2 \('target'\): label 'Class_3' is not an integer \(the labels"),
    (["1,0.37", "2,1.5"], r"t\.csv:2, column 2 \('target'\): label '0.37' is a number but not an integer"),
])
def test_bad_labels_name_their_line(tmp_path, rows, message):
    write(tmp_path / "t.csv", "f,target", rows)
    with pytest.raises(ValueError, match=message):
        CsvTable(tmp_path / "t.csv")


@pytest.mark.parametrize("variant", ["crlf", "bom", "quoted"])
def test_line_endings_bom_and_quotes_give_the_same_codes(tmp_path, variant):
    rows = ["1,0.5,Class_3", "2,1,Class_9"]
    if variant == "quoted":
        rows = ['1,"0.5","Class_3"', '2,1," Class_9 "']
    path = write(tmp_path / "t.csv", "id,f,target", rows, newline="\r\n" if variant == "crlf" else "\n")
    if variant == "bom":
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    table = CsvTable(path, classes=OTTO)
    assert table.labels.tolist() == [2, 8] and table.ids.tolist() == [1, 2]


def test_the_build_saves_the_mapping_and_validation_builds_reuse_it(tmp_path):
    write(tmp_path / "train.csv", "id,f,target", [f"{i},{i},Class_{1 + i % 9}" for i in range(1, 19)])
    write(tmp_path / "val.csv", "id,f,target", ["1,5,Class_3", "2,6,Class_9"])
    write(tmp_path / "bad.csv", "id,f,target", ["1,5,Class_3", "2,6,Class_10"])
    assert cli_output(["build-lmdb", tmp_path / "train.csv", tmp_path / "train", "-q", "--workers", "0"])[0] == 0
    assert read_classes(tmp_path / "train") == OTTO == read_classes(tmp_path / "train" / "labels.txt")
    code, _, err = cli_output(["build-lmdb", tmp_path / "val.csv", tmp_path / "val", "-q", "--classes",
                               tmp_path / "train" / "labels.txt"])
    assert code == 0, err
    assert db_labels(tmp_path / "val") == [2, 8]
    assert (tmp_path / "val" / "labels.txt").read_text().split() == OTTO
    code, _, err = cli_output(["build-lmdb", tmp_path / "bad.csv", tmp_path / "bad", "-q", "--classes", tmp_path / "train",
                               "--strict"])
    assert code == 1 and "bad.csv:3" in err and "Class_10" in err and not (tmp_path / "bad").exists()
    code, _, err = cli_output(["build-lmdb", tmp_path / "bad.csv", tmp_path / "bad", "-q", "--classes", tmp_path / "train"])
    assert code == 0 and "Class_10" in (tmp_path / "bad" / "skipped.txt").read_text()  # listed, as bad images
    report = build_lmdb(str(tmp_path / "val.csv"), str(tmp_path / "api"), BuildOptions(classes=OTTO))
    assert report.class_names == OTTO
    h5 = tmp_path / "t.h5"
    import h5py

    with h5py.File(h5, "w") as f:
        f["data"], f["label"] = np.zeros((2, 3), np.float32), np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="classes applies to CSV, image folder and list file sources, not hdf5"):
        build_lmdb(str(h5), str(tmp_path / "x"), BuildOptions(classes=OTTO))


def test_a_missing_label_column_is_an_error_naming_the_columns(tmp_path):
    path = write(tmp_path / "t.csv", "id,feat_1,label", ["1,0.5,3", "2,1,4"])
    code, _, err = cli_output(["build-lmdb", path, tmp_path / "db", "-q", "--workers", "0"])
    assert code == 1 and "no label column 'target'" in err and "'feat_1', 'label'" in err
    assert not (tmp_path / "db").exists()
    with pytest.raises(ValueError, match=r"t\.csv: no label column 'target'.*label_column='label'"):
        CsvTable(path)
    assert cli_output(["build-lmdb", path, tmp_path / "db", "-q", "--label-column", "label"])[0] == 0
    assert db_labels(tmp_path / "db") == [3, 4]
    plain = write(tmp_path / "p.csv", "id,a,b", ["1,0.5,3", "2,1,4"])  # no label-like column at all
    code, _, err = cli_output(["build-lmdb", plain, tmp_path / "p", "-q"])
    assert code == 1 and "no label column 'target'" in err and "['id', 'a', 'b']" in err and "--no-labels" in err
    assert cli_output(["build-lmdb", plain, tmp_path / "p", "-q", "--no-labels"])[0] == 0
    assert db_labels(tmp_path / "p") == [0, 0]
    assert [parse_datum_wire(v)["float_data"] for _, v in read_db(tmp_path / "p")] == [[0.5, 3.0], [1.0, 4.0]]
    assert CsvTable(plain).labels is None  # reading (not building) an unlabelled file stays allowed
    with pytest.raises(ValueError, match="no_labels=True .* excludes label_column"):
        BuildOptions(no_labels=True, label_column="label")


def test_skip_mode_skips_bad_rows_and_lists_them(tmp_path, caplog):
    rows = ["1,0.5,2,Class_1",
            "2,abc,3,Class_2",       # bad cell
            "3,1,Class_3",           # short row
            "4,1,2,3,Class_4",       # long row
            '5,"1",2,Class_2',       # quoted cell: fine
            "6,1,2,",                # empty label
            "x,1,2,Class_1",         # bad id
            "8,nan,2,Class_3",       # NaN feature: a number, kept (and warned about)
            "9,1,2,NaN"]             # NaN label
    path = write(tmp_path / "t.csv", "id,a,b,target", rows, newline="\r\n")
    with pytest.raises(ValueError, match=r"t\.csv:3, column 2 \('a'\): 'abc' is not a number"):
        CsvTable(path)
    with caplog.at_level(logging.WARNING, logger="feedstock.loaders.csv_table"):
        table = CsvTable(path, on_error="skip")
    assert table.ids.tolist() == [1, 5, 8] and table.labels.tolist() == [0, 1, 2]
    assert [table.key(i) for i in range(3)] == [f"{path}:2", f"{path}:6", f"{path}:9"]
    assert np.isnan(table.features[2, 0]) and table.features[1].tolist() == [1.0, 2.0]
    skipped = [(row.line, row.reason) for row in table.skipped]
    assert [line for line, _ in skipped] == [3, 4, 5, 7, 8, 10]
    assert "'abc' is not a number" in skipped[0][1] and "short row" in skipped[1][1]
    assert "long row" in skipped[2][1] and "empty label" in skipped[3][1] and "id 'x'" in skipped[4][1]
    assert "missing label 'NaN'" in skipped[5][1]
    report = table.report()
    assert report["bad_records"] == 6 and report["skipped"][0] == {"key": f"{path}:3", "line": 3,
                                                                 "error": skipped[0][1]}
    logged = caplog.text
    assert f"{path}:3" in logged and "non-finite" in logged and "in all" in logged  # 6 > 5: a summary line
    with pytest.raises(ValueError, match="on_error='ignore' must be one of"):
        CsvTable(path, on_error="ignore")


def test_skip_mode_with_nothing_left_and_with_a_class_list(tmp_path):
    path = write(tmp_path / "t.csv", "a,target", ["x,Class_1", "y,Class_2"])
    with pytest.raises(ValueError, match=r"no data rows \(2 bad rows skipped, first .*t\.csv:2"):
        CsvTable(path, on_error="skip")
    val = write(tmp_path / "v.csv", "a,target", ["1,Class_1", "2,Class_12", "3,Class_9"])
    table = CsvTable(val, classes=OTTO, on_error="skip")
    assert table.labels.tolist() == [0, 8] and [r.key for r in table.skipped] == [f"{val}:3"]
    assert "Class_12" in table.skipped[0].reason


@pytest.mark.parametrize("bad_row, reason", [("3,x,Class_2", "x"), ("3,1", "2"), ("3,4,", "empty label")])
def test_build_lmdb_lists_bad_csv_rows_in_skipped_txt_unless_strict(tmp_path, bad_row, reason):
    rows = ["1,0.5,Class_1", "2,1.5,Class_2", bad_row, "4,2.5,Class_1"]
    write(tmp_path / "t.csv", "id,f,target", rows)
    code, out, err = cli_output(["build-lmdb", tmp_path / "t.csv", tmp_path / "db", "-q", "--workers", "0"])
    assert code == 0, err
    assert "skipped 1" in out and "skipped.txt" in out
    keys = [k.decode() for k, _ in read_db(tmp_path / "db")]
    assert keys == ["00000000_1", "00000001_2", "00000002_4"]
    assert [parse_datum_wire(v).get("label", 0) for _, v in read_db(tmp_path / "db")] == [0, 1, 0]
    (entry,) = (tmp_path / "db" / "skipped.txt").read_text().splitlines()
    split, line_id, name, why = entry.split("\t")
    assert name == f"{tmp_path / 't.csv'}:4" and reason in why
    code, _, err = cli_output(["build-lmdb", tmp_path / "t.csv", tmp_path / "strict", "-q", "--strict"])
    assert code == 1 and "t.csv:4" in err and not (tmp_path / "strict").exists()
    # a resumed or repeated build lists the row once
    code, _, err = cli_output(["build-lmdb", tmp_path / "t.csv", tmp_path / "db", "-q", "--resume"])
    assert code == 0 and len((tmp_path / "db" / "skipped.txt").read_text().splitlines()) == 1
