"""Hdf5: Caffe's own HDF5Data fixtures, list-file resolution, slice reads, errors naming file/field."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from feedstock.loaders import Hdf5, hdf5_rows
from feedstock.spec import ArraySpec


def test_caffe_sample_data_through_the_list_file(shared_data, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # list paths are relative to the list file's folder, not the cwd
    folder = shared_data / "caffe-hdf5"
    src = Hdf5(folder / "sample_data_list.txt", fields=("data", "label", "label2"))
    assert len(src) == 20 and len(src.files) == 2
    data = np.arange(2400, dtype=np.float32).reshape(10, 8, 6, 5)
    for i in range(20):
        f, row = divmod(i, 10)
        sample = src[i]
        assert all(v.dtype == np.float32 for v in sample.values())
        np.testing.assert_array_equal(sample["data"], data[row] + 2400 * f)  # gzip file: arange + 2400
        np.testing.assert_array_equal(sample["label"], [row + 1.0])  # uint8 in the gzip file -> float32
        np.testing.assert_array_equal(sample["label2"], [row + 2.0])
    assert src.key(13) == f"{folder / 'sample_data_2_gzip.h5'}:3"
    assert src.spec() == {"data": ArraySpec((8, 6, 5), np.float32), "label": ArraySpec((1,), np.float32),
                          "label2": ArraySpec((1,), np.float32)}


def test_single_file_source(shared_data):
    src = Hdf5(shared_data / "caffe-hdf5" / "solver_data.h5", fields=("data", "targets"))
    assert len(src) == 8
    with h5py.File(shared_data / "caffe-hdf5" / "solver_data.h5", "r") as f:
        np.testing.assert_array_equal(src[5]["data"], f["data"][5])
        np.testing.assert_array_equal(src[7]["targets"], f["targets"][7])


def _write(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value


def test_label_shape_kept_and_integer_classes_converted(tmp_path):
    _write(tmp_path / "a.h5", data=np.arange(6, dtype=np.int16).reshape(3, 2), label=np.array([4, 5, 6], np.uint32))
    src = Hdf5(tmp_path / "a.h5")
    assert src[1]["label"].shape == () and src[1]["label"] == 5.0 and src[1]["label"].dtype == np.float32
    np.testing.assert_array_equal(src[2]["data"], [4.0, 5.0])
    assert src.spec()["label"] == ArraySpec((), np.float32)


class _CountingReads:
    """Counts h5py Dataset reads made through __getitem__."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = h5py.Dataset.__getitem__

        def counted(ds, args, *rest, **kw):
            self.calls += 1
            return original(ds, args, *rest, **kw)

        monkeypatch.setattr(h5py.Dataset, "__getitem__", counted)


def _two_files(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(n, 3)).astype(np.float32) for n in (100, 50)]
    for k, part in enumerate(parts):
        _write(tmp_path / f"p{k}.h5", data=part, label=np.arange(len(part), dtype=np.float64) + 1000 * k)
    (tmp_path / "list.txt").write_text("p0.h5   p1.h5\n\n")  # whitespace-separated tokens
    return Hdf5(tmp_path / "list.txt"), parts


def test_read_batch_reads_slices_not_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(hdf5_rows, "MEMMAP", False)  # the h5py path, for layouts a map cannot read
    src, parts = _two_files(tmp_path)
    indices = [120, 3, 90, 4, 5, 140, 3, 60, -1]
    src[0]  # open the files before counting
    counter = _CountingReads(monkeypatch)
    got = src.read_batch(indices)
    assert counter.calls == 4  # one bounding slice per file and field
    where = [(0, i) if 0 <= i < 100 else (1, i % 150 - 100) for i in indices]
    np.testing.assert_array_equal(got["data"], np.stack([parts[f][row] for f, row in where]))
    np.testing.assert_array_equal(got["label"], [row + 1000.0 * f for f, row in where])
    assert got["data"].dtype == got["label"].dtype == np.float32
    monkeypatch.setattr(hdf5_rows, "BYTES_PER_CALL", 0)  # force one slice per run of rows
    counter.calls = 0
    got = src.read_batch([3, 4, 5, 60, 61, 90])
    assert counter.calls == 2 * 3  # runs 3-5, 60-61, 90 for each of the two fields
    np.testing.assert_array_equal(got["data"], parts[0][[3, 4, 5, 60, 61, 90]])
    counter.calls = 0
    scattered = [97, 1, 12, 40, 33, 8, 71, 55, 26, 19, 64, 86, 3, 49]  # 14 runs of one row
    got = src.read_batch(scattered)
    assert counter.calls == 2  # many short runs: one point selection per field
    np.testing.assert_array_equal(got["data"], parts[0][scattered])
    np.testing.assert_array_equal(got["label"], scattered)
    counter.calls = 0
    out = {"data": np.zeros((4, 3), np.float32), "label": np.zeros(4, np.float64)}
    assert src.read_batch([10, 11, 12, 13], out=out)["data"] is out["data"]
    assert counter.calls == 2  # one run: one slice per field
    np.testing.assert_array_equal(out["data"], parts[0][10:14])
    np.testing.assert_array_equal(out["label"], [10, 11, 12, 13])
    with pytest.raises(IndexError, match="index 150 out of range"):
        src.read_batch([0, 150])


class _RowsOnly(Hdf5):
    read_batch = None  # the Loader reads record by record


@pytest.mark.parametrize("shuffle", [False, True])
def test_loader_reads_hdf5_through_the_batch_path(tmp_path, monkeypatch, no_leaks, shuffle):
    from feedstock.pipeline.loader import Loader

    monkeypatch.setattr(hdf5_rows, "MEMMAP", False)  # counts h5py calls (the memmap path makes none)
    _two_files(tmp_path)
    kw = dict(batch_size=16, shuffle=shuffle, seed=3, drop_last=False)
    with Loader(_RowsOnly(tmp_path / "list.txt"), workers=0, **kw) as rows_loader:
        want = [{k: v.copy() for k, v in b.items()} for b in rows_loader]
    counter = _CountingReads(monkeypatch)
    with Loader(Hdf5(tmp_path / "list.txt"), workers=0, **kw) as loader:
        got = [{k: v.copy() for k, v in b.items()} for b in loader]
    assert len(got) == len(want) == 10
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a["data"], b["data"])
        np.testing.assert_array_equal(a["label"], b["label"])
    if not shuffle:  # batch 6 spans both files: two files x two fields; every other batch: one run each
        assert counter.calls == 2 * 10 + 2
    else:
        assert counter.calls <= 4 * 10 < 2 * 150  # at most two files x two fields per batch; never per row
    with Loader(Hdf5(tmp_path / "list.txt"), workers=2, **kw) as loader:
        got2 = [{k: v.copy() for k, v in b.items()} for b in loader]
    for a, b in zip(got2, want):
        np.testing.assert_array_equal(a["data"], b["data"])


def test_list_paths_fall_back_to_cwd_like_caffe(tmp_path, monkeypatch):
    (tmp_path / "lists").mkdir()
    _write(tmp_path / "d.h5", data=np.zeros((2, 1), np.float32), label=np.zeros(2, np.float32))
    (tmp_path / "lists" / "l.txt").write_text("d.h5\n")
    monkeypatch.chdir(tmp_path)
    assert len(Hdf5(tmp_path / "lists" / "l.txt")) == 2


def test_errors_name_file_and_fields(tmp_path):
    _write(tmp_path / "ragged.h5", data=np.zeros((3, 2)), label=np.zeros(4))
    with pytest.raises(ValueError, match=r"ragged\.h5.*different numbers of rows \{'data': 3, 'label': 4\}"):
        Hdf5(tmp_path / "ragged.h5")
    _write(tmp_path / "nolabel.h5", data=np.zeros((3, 2)), other=np.zeros(3))
    with pytest.raises(ValueError, match=r"nolabel\.h5' has no dataset 'label' \(datasets: \['data', 'other'\]\)"):
        Hdf5(tmp_path / "nolabel.h5")
    _write(tmp_path / "text.h5", data=np.zeros((2, 2)), label=np.array([b"a", b"b"]))
    with pytest.raises(ValueError, match=r"text\.h5' dataset 'label' is \|S1"):
        Hdf5(tmp_path / "text.h5")
    _write(tmp_path / "a.h5", data=np.zeros((2, 2)), label=np.zeros(2))
    _write(tmp_path / "b.h5", data=np.zeros((2, 3)), label=np.zeros(2))
    (tmp_path / "ab.txt").write_text("a.h5\nb.h5\n")
    with pytest.raises(ValueError, match=r"b\.h5' field 'data' has rows of shape \(3,\), but .*a\.h5' has \(2,\)"):
        Hdf5(tmp_path / "ab.txt")
    (tmp_path / "missing.txt").write_text("a.h5\n\nnope.h5\n")
    with pytest.raises(ValueError, match=r"missing\.txt:3: HDF5 file 'nope\.h5' not found"):
        Hdf5(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="lists no files"):
        Hdf5(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="does not exist"):
        Hdf5(tmp_path / "absent.h5")
    with pytest.raises(ValueError, match="fields="):
        Hdf5(tmp_path / "a.h5", fields="data")


def _layouts(tmp_path, data, label):
    """The same rows stored contiguous, chunked, chunked + gzip: (path, expected kind of 'data')."""
    out = []
    for name, kw, kind in (("flat", {}, "memmap"), ("chunked", {"chunks": (7, data.shape[1])}, "chunks"),
                           ("gzip", {"chunks": (16, data.shape[1]), "compression": "gzip"}, "chunks")):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f.create_dataset("data", data=data, **kw)
            f.create_dataset("label", data=label)
        out.append((tmp_path / f"{name}.h5", kind))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64, ">f4", np.int32, np.uint8])
def test_every_layout_reads_the_same_rows_in_any_order(tmp_path, monkeypatch, dtype):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 200, size=(203, 5)).astype(dtype)
    label = np.arange(203, dtype=np.int64)
    orders = [rng.permutation(203)[:64], np.arange(40, 104), np.array([5, 5, 202, 0, 5]), rng.permutation(203)]
    monkeypatch.setattr(hdf5_rows, "CHUNK_CACHE_BYTES", 7 * 5 * 8 * 4 * 3)  # a few chunks: evictions happen
    for path, kind in _layouts(tmp_path, data, label):
        src = Hdf5(path)
        assert src.layouts()["data"] == kind
        for idx in orders:
            got = src.read_batch(idx)
            np.testing.assert_array_equal(got["data"], data[idx].astype(np.float32))
            np.testing.assert_array_equal(got["label"], idx.astype(np.float32))
            assert got["data"].dtype == np.float32
        row = src[17]["data"]
        np.testing.assert_array_equal(row, data[17].astype(np.float32))
        row[:] = -1  # a fresh array: writing it changes nothing in the source
        np.testing.assert_array_equal(src[17]["data"], data[17].astype(np.float32))


@pytest.mark.parametrize("layout", [{}, {"chunks": (2,)}, {"chunks": (2,), "compression": "gzip"}])
@pytest.mark.parametrize("memmap", [True, False])
def test_no_silent_casts_name_file_dataset_and_row(tmp_path, monkeypatch, layout, memmap):
    from feedstock.errors import RecordError

    monkeypatch.setattr(hdf5_rows, "MEMMAP", memmap)
    cases = [("big.h5", np.array([1.0, 2.0, 1e300, 3.0, 4.0, 5.0]), r"big\.h5:2: dataset 'data'.*overflow float32"),
             ("int.h5", np.array([0, 16777216, -16777216, 7, 16777217, 1], np.int64),
              r"int\.h5:4: dataset 'data'.*not all exact in float32"),
             ("neg.h5", np.array([0, 1, 2, 3, 4, -16777219], np.int64), r"neg\.h5:5:")]
    for name, values, message in cases:
        with h5py.File(tmp_path / name, "w") as f:
            f.create_dataset("data", data=values, **layout)
            f.create_dataset("label", data=np.zeros(6, np.float32))
        src = Hdf5(tmp_path / name)
        with pytest.raises(RecordError, match=message):
            src.read_batch(np.arange(6))
        with pytest.raises(RecordError, match=message):
            src.read_batch(np.array([5, 4, 3, 2, 1, 0]))
        bad = int(message.split(":")[1]) if message.count(":") else None
        with pytest.raises(RecordError, match=message.split(":")[0]):
            src[bad]
        fine = [i for i in range(6) if i != bad]
        got = src.read_batch(fine)["data"]  # the other rows are exact: they read
        np.testing.assert_array_equal(got.astype(values.dtype), values[fine])
    # values float32 holds exactly read fine, at the bounds: -2**24, 2**24, float32's max
    with h5py.File(tmp_path / "edge.h5", "w") as f:
        f.create_dataset("data", data=np.array([2**24, -(2**24), 3], np.int64), **layout)
        f.create_dataset("label", data=np.array([3.4e38, -3.4e38, 0.0]))
    got = Hdf5(tmp_path / "edge.h5").read_batch([0, 1, 2])
    np.testing.assert_array_equal(got["data"], [16777216.0, -16777216.0, 3.0])
    np.testing.assert_array_equal(got["label"], np.array([3.4e38, -3.4e38, 0.0], np.float32))


def test_shuffled_loader_over_memmap_matches_rows(tmp_path, no_leaks):
    from feedstock.pipeline.loader import Loader

    rng = np.random.default_rng(2)
    data = rng.normal(size=(300, 4)).astype(np.float32)
    _write(tmp_path / "m.h5", data=data, label=np.arange(300, dtype=np.float32))
    kw = dict(batch_size=32, shuffle=True, seed=5, drop_last=False)
    for workers in (0, 2):
        with Loader(Hdf5(tmp_path / "m.h5"), workers=workers, **kw) as loader:
            seen = [(b["label"].copy(), b["data"].copy()) for b in loader]
        labels = np.concatenate([s[0] for s in seen]).astype(np.int64)
        assert sorted(labels.tolist()) == list(range(300)) and labels.tolist() != list(range(300))
        np.testing.assert_array_equal(np.concatenate([s[1] for s in seen]), data[labels])
