"""Records that do not fit the batch spec: never cast unsafely, an error naming the key, or skipped and reported.

Each case is tried in the per-row path and in the vectorised batch path (a source
with ``read_batch``), with 0 and 2 workers. The expectations are written out by hand.
"""
from __future__ import annotations

from typing import Dict, List

import lmdb
import numpy as np
import pytest

from feedstock.caffe_pb import array_to_datum
from feedstock.casting import cast_problem, copy_checked
from feedstock.errors import WorkerError
from feedstock.loaders import CaffeLmdb
from feedstock.loaders.base import Source, deliver
from feedstock.pipeline.loader import Loader
from feedstock.spec import ArraySpec, Spec
from feedstock.transforms import CaffeTransform
from feedstock.transforms.base import Transform

N = 8
BAD = 5  # the odd record out


class Records(Source):
    """Per-record dicts; the spec is record 0's. No batched read: the Loader fills row by row."""

    def __init__(self, records: List[Dict[str, np.ndarray]]):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        return self.records[self._check_index(i)]

    def key(self, i: int) -> str:
        return f"rec-{int(i):03d}"

    def spec(self) -> Spec:
        return {k: ArraySpec.of(v) for k, v in self.records[0].items()}


class BatchRecords(Records):
    """The same with a vectorised read that stacks as numpy does (promoting dtypes, failing on shapes)."""

    def read_batch(self, indices, out=None):
        rows = [self.records[int(i)] for i in indices]
        return deliver({k: np.stack([r[k] for r in rows]) for k in rows[0]}, out)


def _records(odd: np.ndarray) -> List[Dict[str, np.ndarray]]:
    out = [{"data": np.full((3, 2, 2), 10 * i, np.uint8), "label": np.int64(i)} for i in range(N)]
    out[BAD] = {"data": odd, "label": np.int64(BAD)}
    return out


UNFIT = {  # the odd record, and what the error must say
    "float into uint8 (300.7 would become 44)": (np.full((3, 2, 2), 300.7, np.float32), "float32.*uint8"),
    "integral float into uint8": (np.full((3, 2, 2), 3.0, np.float64), "float64.*uint8"),
    "another height and width": (np.zeros((3, 2, 3), np.uint8), r"shape \(3, 2, 3\).*\(3, 2, 2\)"),
    "another channel count": (np.zeros((1, 2, 2), np.uint8), r"shape \(1, 2, 2\).*\(3, 2, 2\)"),
    "int overflow": (np.full((3, 2, 2), 300, np.int16), r"values 300\.\.300 do not fit uint8"),
    "negative into unsigned": (np.full((3, 2, 2), -1, np.int64), r"values -1\.\.-1 do not fit uint8"),
}
PATHS = {"per-row": Records, "batch": BatchRecords}


def _loader(source: Source, workers: int, **kw) -> Loader:
    return Loader(source, None, batch_size=4, workers=workers, shuffle=False, drop_last=False, **kw)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("case", sorted(UNFIT))
def test_a_record_that_does_not_fit_is_an_error_naming_its_key(no_leaks, case, path, workers):
    odd, message = UNFIT[case]
    with _loader(PATHS[path](_records(odd)), workers) as loader:
        it = iter(loader)
        first = next(it)  # records 0-3 are fine and arrive first
        np.testing.assert_array_equal(first["data"][:, 0, 0, 0], [0, 10, 20, 30])
        with pytest.raises(WorkerError, match=message) as info:
            next(it)
    assert info.value.key == f"rec-{BAD:03d}"
    assert f"rec-{BAD:03d}" in str(info.value)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("case", sorted(UNFIT))
def test_skip_replaces_the_record_and_reports_it(no_leaks, case, path, workers):
    odd, message = UNFIT[case]
    with _loader(PATHS[path](_records(odd)), workers, on_error="skip", max_bad_fraction=0.5) as loader:
        batches = [{k: v.copy() for k, v in b.items()} for b in loader]
        report = loader.report()
    data = np.concatenate([b["data"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches]).tolist()
    assert labels == [0, 1, 2, 3, 4, 6, 6, 7]  # the bad row takes the next good record of the order
    assert data.dtype == np.uint8 and data[:, 0, 0, 0].tolist() == [10 * i for i in labels]
    assert [(r["key"], r["index"]) for r in report["skipped"]] == [(f"rec-{BAD:03d}", BAD)]
    assert report["skipped"][0]["error"].startswith(("ValueError", "ShapeError")) and "field 'data'" in report["skipped"][0]["error"]


FIT = {  # casts that change no value are fine: (record 0's data, the odd record)
    "uint8 into float32": (np.float32, np.full((3, 2, 2), 200, np.uint8)),
    "int16 within uint8's range": (np.uint8, np.full((3, 2, 2), 255, np.int16)),
    "float64 into float32": (np.float32, np.full((3, 2, 2), 0.5, np.float64)),
}


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("case", sorted(FIT))
def test_value_preserving_casts_are_allowed(no_leaks, case, path, workers):
    dtype, odd = FIT[case]
    records = _records(odd)
    for i, r in enumerate(records):
        if i != BAD:
            r["data"] = r["data"].astype(dtype)
    with _loader(PATHS[path](records), workers) as loader:
        data = np.concatenate([b["data"].copy() for b in loader])
    assert data.dtype == dtype
    np.testing.assert_array_equal(data[BAD], odd.astype(dtype))
    np.testing.assert_array_equal(data[:, 0, 0, 0][[0, 3, 7]], [0, 30, 70])


class Identity(Transform):
    """A transform that writes through the generic row copy (no fused ``into``)."""

    def __call__(self, sample, rng):
        return sample

    def output_spec(self, spec):
        return spec


@pytest.mark.parametrize("workers", [0, 2])
def test_a_transform_output_that_does_not_fit_is_an_error_too(no_leaks, workers):
    odd = np.full((3, 2, 2), 300.7, np.float32)
    with Loader(Records(_records(odd)), [Identity()], batch_size=4, workers=workers, shuffle=False,
                drop_last=True) as loader:
        with pytest.raises(WorkerError, match="float32.*uint8") as info:
            list(loader)
    assert info.value.key == f"rec-{BAD:03d}"


# ----- the reported case: a float Datum in an LMDB of uint8 Datums ----------------------------------
def _mixed_lmdb(path) -> str:
    env = lmdb.open(str(path), map_size=1 << 20)
    with env.begin(write=True) as txn:
        for i in range(N):
            arr = np.full((3, 2, 2), 300.7, np.float32) if i == BAD else np.full((3, 2, 2), 10 * i, np.uint8)
            txn.put(f"{i:08d}".encode(), array_to_datum(arr, i).SerializeToString())
    env.close()
    return str(path)


@pytest.mark.parametrize("workers", [0, 2])
def test_float_datum_among_uint8_datums(tmp_path, no_leaks, workers):
    path = _mixed_lmdb(tmp_path / "db")
    key = f"{path}:{BAD:08d}"
    with _loader(CaffeLmdb(path), workers) as loader:
        with pytest.raises(WorkerError, match="float32.*uint8") as info:
            list(loader)
    assert info.value.key == key
    with _loader(CaffeLmdb(path), workers, on_error="skip", max_bad_fraction=0.5) as loader:
        data = np.concatenate([b["data"].copy() for b in loader])
        assert [r["key"] for r in loader.report()["skipped"]] == [key]
    assert 44 not in data and data[:, 0, 0, 0].tolist() == [0, 10, 20, 30, 40, 60, 60, 70]
    # Through Caffe's transform the float Datum is valid, as in Caffe: its own values, scaled
    with Loader(CaffeLmdb(path), [CaffeTransform(phase="TEST", scale=0.5)], batch_size=4, workers=workers,
                shuffle=False, drop_last=True) as loader:
        data = np.concatenate([b["data"].copy() for b in loader])
    assert data.dtype == np.float32
    np.testing.assert_allclose(data[:, 0, 0, 0], [0, 5, 10, 15, 20, 150.35, 30, 35], rtol=1e-6)


# ----- the rule itself ------------------------------------------------------------------------------
@pytest.mark.parametrize("value, dtype, problem", [
    (np.array([1, 2], np.uint8), np.float32, ""),
    (np.array([1.5], np.float64), np.float32, ""),
    (np.array([1e300], np.float64), np.float32, "overflow float32"),
    (np.array([np.inf, np.nan], np.float64), np.float32, ""),
    (np.array([2**31], np.int64), np.int32, "do not fit int32"),
    (np.array([2**31 - 1, -(2**31)], np.int64), np.int32, ""),
    (np.array([True]), np.uint8, ""),
    (np.array([1.0], np.float32), np.int64, "float32 value cannot be stored as int64"),
    (np.array([1 + 1j]), np.float64, "complex128 value cannot be stored"),
    (np.array([], np.int64), np.uint8, ""),
    (np.array([], np.float64), np.uint8, "float64 value cannot be stored"),  # by dtype, even when empty
    (np.array([7, -(2**24)], np.int64), np.float32, ""),  # labels as float32: exact
    (np.array([2**24 + 1], np.int64), np.float32, "not all exact in float32"),
    (np.array([2**53], np.int64), np.float64, ""),
    (np.array([2**63 - 1], np.int64), np.float64, "not all exact in float64"),
    (np.array([2**64 - 1], np.uint64), np.int64, "do not fit int64"),
    (np.array(["a"], object), np.float32, "object value cannot be stored"),
    (np.array([1.0], ">f4"), np.float32, ""),  # byte order only
])
def test_cast_rule(value, dtype, problem):
    got = cast_problem(value, np.dtype(dtype))
    assert problem in got and bool(got) == bool(problem)


def test_copy_checked_leaves_the_destination_alone_on_error():
    dst = np.zeros(2, np.uint8)
    with pytest.raises(ValueError, match="field 'x' is float32, the batch holds uint8"):
        copy_checked("x", dst, np.array([300.7, 1.0], np.float32))
    assert dst.tolist() == [0, 0]
    copy_checked("x", dst, np.array([7, 255], np.int64))
    assert dst.tolist() == [7, 255]


def test_a_float_first_record_gives_float_batches_that_hold_the_uint8_records_exactly(tmp_path, no_leaks):
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        for i in range(4):  # key 0 is the float Datum: the batch spec (from record 0) is float32
            arr = np.full((1, 2, 2), 300.7, np.float32) if i == 0 else np.full((1, 2, 2), 250 + i, np.uint8)
            txn.put(f"{i:08d}".encode(), array_to_datum(arr, i).SerializeToString())
    env.close()
    with Loader(CaffeLmdb(tmp_path / "db"), batch_size=4, workers=0, shuffle=False, drop_last=True) as loader:
        (batch,) = [b["data"].copy() for b in loader]
    assert batch.dtype == np.float32
    np.testing.assert_array_equal(batch[:, 0, 0, 0], np.array([300.7, 251, 252, 253], np.float32))


@pytest.mark.parametrize("workers", [0, 2])
def test_other_channel_count_through_caffe_transform_names_the_key(tmp_path, no_leaks, workers):
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        for i in range(N):  # record BAD is grey among colour records: the batch is (3, 4, 4)
            arr = np.full((1, 4, 4), 9, np.uint8) if i == BAD else np.full((3, 4, 4), i, np.uint8)
            txn.put(f"{i:08d}".encode(), array_to_datum(arr, i).SerializeToString())
    env.close()
    key = f"{tmp_path / 'db'}:{BAD:08d}"
    kw = dict(batch_size=4, workers=workers, shuffle=False, drop_last=True)
    with Loader(CaffeLmdb(tmp_path / "db"), [CaffeTransform(phase="TRAIN", scale=2.0)], **kw) as loader:
        with pytest.raises(WorkerError) as info:
            list(loader)
    assert info.value.key == key
    with Loader(CaffeLmdb(tmp_path / "db"), [CaffeTransform(phase="TRAIN", scale=2.0)], on_error="skip",
                max_bad_fraction=0.5, **kw) as loader:
        data = np.concatenate([b["data"].copy() for b in loader])
        assert [r["key"] for r in loader.report()["skipped"]] == [key]
    assert data.shape == (N, 3, 4, 4) and data[:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8, 12, 12, 14]
