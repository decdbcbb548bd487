"""CsvTable: the Otto layout, label mapping, both parse paths agree, errors name file/line/column."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedstock.fixtures.synthetic import make_otto_csv, write_otto_csv
from feedstock.loaders import CsvTable
from feedstock.loaders.csv_parse import Columns, parse_fast, parse_slow
from feedstock.spec import ArraySpec


def test_otto_layout(tmp_path):
    path = tmp_path / "train.csv"
    counts, labels = make_otto_csv(str(path), np.random.default_rng(0), rows=300, features=93)
    src = CsvTable(path)
    assert len(src) == 300 and src.columns == [f"feat_{j}" for j in range(1, 94)]
    assert src.classes == [f"Class_{k}" for k in range(1, 10)]
    np.testing.assert_array_equal(src.features, counts.astype(np.float32))
    np.testing.assert_array_equal(src.labels, labels)
    np.testing.assert_array_equal(src.ids, np.arange(1, 301))
    row = src[7]
    assert row["data"].dtype == np.float32 and row["data"].shape == (93,)
    np.testing.assert_array_equal(row["data"], counts[7])
    assert int(row["label"]) == labels[7] and int(row["id"]) == 8
    assert src.key(7) == f"{path}:9"  # header is line 1
    assert src.spec() == {"data": ArraySpec((93,), np.float32), "label": ArraySpec((), np.int64),
                          "id": ArraySpec((), np.int64)}


def test_otto_test_file_has_no_label_and_caffe_shape(tmp_path):
    path = tmp_path / "test.csv"
    counts, _ = make_otto_csv(str(path), np.random.default_rng(1), rows=20, features=5, with_target=False)
    src = CsvTable(path, caffe_shape=True)
    assert sorted(src[0]) == ["data", "id"] and src.classes is None
    assert src[3]["data"].shape == (5, 1, 1)
    np.testing.assert_array_equal(src[3]["data"][:, 0, 0], counts[3])
    assert src.spec()["data"] == ArraySpec((5, 1, 1), np.float32)


def test_natural_class_order_and_integer_labels(tmp_path):
    counts = np.arange(24).reshape(12, 2)
    labels = np.array([9, 1, 0, 10, 2, 7, 11, 8, 3, 4, 5, 6])  # written as Class_<label+1>
    write_otto_csv(str(tmp_path / "t.csv"), counts, labels)
    src = CsvTable(tmp_path / "t.csv")
    assert src.classes == [f"Class_{k}" for k in range(1, 13)]  # Class_2 < Class_10
    np.testing.assert_array_equal(src.labels, labels)
    (tmp_path / "i.csv").write_text("a,target\n1.5,7\n2,-3\n3,7\n")
    ints = CsvTable(tmp_path / "i.csv")
    assert ints.classes is None and ints.labels.tolist() == [7, -3, 7]
    assert "id" not in ints[0]


def test_column_options(tmp_path):
    (tmp_path / "t.csv").write_text("key,x,y,cls\n5,1,2,b\n6,3,4,a\n")
    src = CsvTable(tmp_path / "t.csv", label_column="cls", id_column="key")
    assert src.columns == ["x", "y"] and src.classes == ["a", "b"] and src.labels.tolist() == [1, 0]
    assert src.ids.tolist() == [5, 6]
    (tmp_path / "n.csv").write_text("id,x,target\n5,1,2\n")
    no_label = CsvTable(tmp_path / "n.csv", label_column=None, id_column=None)
    assert no_label.columns == ["id", "x", "target"] and sorted(no_label[0]) == ["data"]
    with pytest.raises(ValueError, match=r"t\.csv: label_column='target' is not in the header"):
        CsvTable(tmp_path / "t.csv", label_column="target")  # explicit: required
    with pytest.raises(ValueError, match=r"t\.csv: id_column='id' is not in the header"):
        CsvTable(tmp_path / "t.csv", id_column="id", label_column=None)
    with pytest.raises(ValueError, match=r"t\.csv:2, column 4 \('cls'\): 'b' is not a number"):
        CsvTable(tmp_path / "t.csv", label_column=None, id_column="key")  # cls becomes a feature


def test_long_label_cells(tmp_path):
    long_name = "x" * 300
    (tmp_path / "t.csv").write_text(f"a,target\n1,{long_name}\n2,short\n3,{long_name}\n")
    src = CsvTable(tmp_path / "t.csv")
    assert src.classes == ["short", long_name] and src.labels.tolist() == [1, 0, 1]


def test_rows_are_read_only(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    src = CsvTable(tmp_path / "t.csv")
    with pytest.raises(ValueError):
        src[0]["data"][0] = 5


def test_crlf_blank_lines_quotes_and_whitespace(tmp_path):
    plain = "id,a,b,target\n1,0.5,2,x\n2,-1e3,3,y\n3,4,nan,x\n"
    (tmp_path / "plain.csv").write_text(plain)
    variants = {
        "crlf": plain.replace("\n", "\r\n"),
        "blank": "id,a,b,target\n1,0.5,2,x\n\n2,-1e3,3,y\n   \n3,4,nan,x\n\n\n",
        "quoted": 'id,"a",b,target\n1,"0.5",2,"x"\n2,-1e3,3,y\n3,4,nan," x "\n',
        "spaces": "id,a,b,target\n1, 0.5 ,2,x \n2,-1e3,3,y\n3,4,nan,x\n",
        "no_final_newline": plain.rstrip("\n"),
    }
    ref = CsvTable(tmp_path / "plain.csv")
    for name, text in variants.items():
        (tmp_path / f"{name}.csv").write_bytes(text.encode())
        got = CsvTable(tmp_path / f"{name}.csv")
        np.testing.assert_array_equal(got.features, ref.features, err_msg=name)
        assert got.labels.tolist() == ref.labels.tolist() == [0, 1, 0], name
        assert got.ids.tolist() == [1, 2, 3], name
    blank = CsvTable(tmp_path / "blank.csv")
    assert [blank.key(i).rsplit(":", 1)[1] for i in range(3)] == ["2", "4", "6"]  # real line numbers


@st.composite
def tables(draw):
    rows = draw(st.integers(1, 12))
    cols = draw(st.integers(1, 5))
    cell = st.one_of(st.integers(-10**6, 10**6).map(str),
                     st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr))
    body = [[draw(cell) for _ in range(cols)] + [draw(st.sampled_from(["c1", "c2", "c10"]))] for _ in range(rows)]
    header = ["id"] + [f"f{j}" for j in range(cols)] + ["target"]
    lines = [",".join(header)] + [",".join([str(r)] + row) for r, row in enumerate(body)]
    return "\n".join(lines) + "\n", header


@settings(max_examples=40, deadline=None, derandomize=True)
@given(tables())
def test_fast_and_reference_parsers_agree(table):
    text, header = table
    columns = Columns(header, 0, len(header) - 1)
    body = text.split("\n", 1)[1].encode()
    fast = parse_fast("t.csv", body, columns)
    slow = parse_slow("t.csv", text, columns)
    assert fast is not None
    np.testing.assert_array_equal(fast.features, slow.features)
    assert [s.decode() for s in fast.labels.tolist()] == slow.labels.tolist()
    np.testing.assert_array_equal(fast.ids, slow.ids)


@pytest.mark.parametrize("text, message", [
    ("", r"CSV file '.*e\.csv' is empty"),
    ("  \n\n", r"is empty"),
    ("id,a,target\n", r"has a header but no data rows"),
    ("id,a,target\n1,2,x\n2,abc,y\n", r"e\.csv:3, column 2 \('a'\): 'abc' is not a number"),
    ("id,a,target\n1,2,x\n2,,y\n", r"e\.csv:3, column 2 \('a'\): '' is not a number"),
    ("id,a,b,target\n1,2,3,x\n2,3,y\n", r"e\.csv:3: short row: 3 fields, the header has 4"),
    ("id,a,target\n1,2,x\n2,3,4,y\n", r"e\.csv:3: long row: 4 fields, the header has 3"),
    ("id,a,target\n1,2,x\n2,3, \n", r"e\.csv:3, column 3 \('target'\): empty label"),
    ("id,a,target\n1,2,x\nz,3,y\n", r"e\.csv:3, column 1 \('id'\): id 'z' is not an integer"),
    ("id,a,target\n1,2,x\n99999999999999999999,3,y\n", r"e\.csv:3, column 1 \('id'\): id '9+' is not an integer in"),
    ("id,a,a,target\n1,2,3,x\n", r"e\.csv:1: duplicate column names \['a'\]"),
    ("id,target\n1,x\n", r"no feature columns"),
])
def test_errors_name_file_line_and_column(tmp_path, text, message):
    (tmp_path / "e.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        CsvTable(tmp_path / "e.csv")


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read CSV file"):
        CsvTable(tmp_path / "nope.csv")


@pytest.mark.parametrize("caffe_shape, with_target", [(False, True), (True, False)])
def test_read_batch_equals_the_rows_stacked(tmp_path, caffe_shape, with_target):
    path = tmp_path / "t.csv"
    counts, labels = make_otto_csv(str(path), np.random.default_rng(4), rows=30, features=6,
                                   with_target=with_target)
    src = CsvTable(path, caffe_shape=caffe_shape)
    order = [29, 0, 5, 5, -2]
    batch = src.read_batch(np.asarray(order))
    assert sorted(batch) == sorted(src[0])
    for name, value in batch.items():
        expected = np.stack([src[i][name] for i in order])
        assert value.dtype == expected.dtype and value.shape == expected.shape
        np.testing.assert_array_equal(value, expected)
    np.testing.assert_array_equal(batch["data"].reshape(5, 6), counts[order].astype(np.float32))
    assert batch["id"].tolist() == [30, 1, 6, 6, 29]
    if with_target:  # codes of the class names actually present
        assert [src.classes[c] for c in batch["label"]] == [f"Class_{labels[i] + 1}" for i in order]
    with pytest.raises(IndexError, match="index 30 out of range"):
        src.read_batch([1, 30])
