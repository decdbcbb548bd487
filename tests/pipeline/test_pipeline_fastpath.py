"""The batch fast path with the real sources and CaffeTransform: same batches as row by row, errors named."""
from __future__ import annotations

import numpy as np
import pytest
from pipeline_helpers import assert_same, collect

from feedstock.caffe_pb import array_to_datum
from feedstock.errors import WorkerError
from feedstock.fixtures.synthetic import make_encoded_lmdb, make_otto_csv, make_raw_lmdb
from feedstock.loaders import CaffeLmdb, CsvTable
from feedstock.pipeline.loader import Loader
from feedstock.pipeline.sampler import Sampler
from feedstock.transforms import CaffeTransform
from feedstock.writers import LmdbWriter


class RowLmdb(CaffeLmdb):
    read_batch = None  # one read per record


class RowTable(CsvTable):
    read_batch = None


class RowCaffe(CaffeTransform):
    apply_batch = None  # one fused write per row


def _two_epochs(source, transform, **kw):
    with Loader(source, transform, batch_size=8, seed=3, shuffle=True, drop_last=True, **kw) as loader:
        batches = collect(loader) + collect(loader)
        return batches, loader.fast_path if kw.get("workers") == 0 else None


@pytest.mark.parametrize("kwargs", [
    dict(phase="TRAIN", scale=0.00390625),
    dict(phase="TEST", crop_size=3, mean_value=[10, 20, 30], scale=0.5),
])
def test_lmdb_batches_are_the_same_with_and_without_the_fast_path(no_leaks, tmp_path, kwargs):
    make_raw_lmdb(str(tmp_path / "db"), np.random.default_rng(0), 36, (3, 5, 6))
    rows, _ = _two_epochs(RowLmdb(tmp_path / "db"), [RowCaffe(**kwargs)], workers=0)
    fast0, used = _two_epochs(CaffeLmdb(tmp_path / "db"), [CaffeTransform(**kwargs)], workers=0)
    fast2, _ = _two_epochs(CaffeLmdb(tmp_path / "db"), [CaffeTransform(**kwargs)], workers=2)
    assert used is True  # the fast path served every chunk
    assert_same(fast0, rows)
    assert_same(fast2, rows)


def test_the_fast_path_batch_is_the_sampled_records_transformed(no_leaks, tmp_path):
    images, labels = make_raw_lmdb(str(tmp_path / "db"), np.random.default_rng(1), 20, (1, 4, 4))
    with Loader(CaffeLmdb(tmp_path / "db"), [CaffeTransform(phase="TRAIN", scale=0.5, mean_value=8)],
                batch_size=5, workers=0, seed=2, shuffle=True, drop_last=True) as loader:
        batch = next(iter(loader))
    order = Sampler(20, batch_size=5, seed=2).batch(0, 0)
    expected = (images[order].astype(np.float32) - np.float32(8)) * np.float32(0.5)
    np.testing.assert_array_equal(batch["data"], expected)
    assert batch["label"].tolist() == labels[order].tolist()


@pytest.mark.parametrize("encoded, kwargs", [
    (True, dict(phase="TEST", crop_size=3)),  # encoded records: read_batch declines
    (False, dict(phase="TRAIN", crop_size=3, mirror=True)),  # random per row: apply_batch declines
])
def test_what_cannot_be_batched_goes_row_by_row(no_leaks, tmp_path, encoded, kwargs):
    rng = np.random.default_rng(3)
    if encoded:
        images = [rng.integers(0, 256, (5, 5, 3), dtype=np.uint8) for _ in range(24)]
        make_encoded_lmdb(str(tmp_path / "db"), images, list(range(24)))
    else:
        make_raw_lmdb(str(tmp_path / "db"), rng, 24, (3, 5, 5))
    rows, _ = _two_epochs(RowLmdb(tmp_path / "db", mode="color"), [RowCaffe(**kwargs)], workers=0)
    got, used = _two_epochs(CaffeLmdb(tmp_path / "db", mode="color"), [CaffeTransform(**kwargs)], workers=0)
    assert used is False  # declined once, then rows only
    assert_same(got, rows)
    if encoded:  # by hand: the PNG decodes exactly, the TEST crop is centred at (1, 1)
        order = Sampler(24, batch_size=8, seed=3).batch(0, 0)
        expected = np.stack([images[i].transpose(2, 0, 1)[:, 1:4, 1:4] for i in order]).astype(np.float32)
        np.testing.assert_array_equal(got[0]["data"], expected)


def _lmdb_with_a_bad_record(path: str) -> str:
    with LmdbWriter(path) as w:
        for i in range(16):
            value = array_to_datum(np.full((1, 2, 2), i, np.uint8), i).SerializeToString()
            w.put(f"{i:08d}", b"\xff\xff\xff" if i == 6 else value)
    return f"{path}:00000006"


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_record_in_a_batch_read_is_named(no_leaks, tmp_path, workers):
    key = _lmdb_with_a_bad_record(str(tmp_path / "db"))
    loader = Loader(CaffeLmdb(tmp_path / "db"), [CaffeTransform(phase="TEST")], batch_size=4, workers=workers,
                    shuffle=False, drop_last=True)
    with pytest.raises(WorkerError) as info:
        collect(loader)
    assert info.value.key == key and "not a Caffe Datum" in str(info.value)


def test_skipping_a_bad_record_is_the_same_with_the_fast_path(no_leaks, tmp_path):
    key = _lmdb_with_a_bad_record(str(tmp_path / "db"))
    runs = []
    for source, transform in [(CaffeLmdb(tmp_path / "db"), CaffeTransform(phase="TEST")),
                              (RowLmdb(tmp_path / "db"), RowCaffe(phase="TEST"))]:
        with Loader(source, [transform], batch_size=4, workers=2, seed=1, on_error="skip",
                    max_bad_fraction=0.5, shuffle=True, drop_last=True) as loader:
            runs.append((collect(loader), loader.report()))
    assert_same(runs[0][0], runs[1][0])
    assert [r["key"] for r in runs[0][1]["skipped"]] == [key]
    assert 6 not in np.concatenate([b["label"] for b in runs[0][0]]).tolist()


def test_csv_batches_are_the_same_with_and_without_the_fast_path(no_leaks, tmp_path):
    make_otto_csv(str(tmp_path / "t.csv"), np.random.default_rng(4), rows=50, features=7)
    rows, _ = _two_epochs(RowTable(tmp_path / "t.csv", caffe_shape=True), None, workers=0)
    fast, used = _two_epochs(CsvTable(tmp_path / "t.csv", caffe_shape=True), None, workers=0)
    grouped, _ = _two_epochs(CsvTable(tmp_path / "t.csv", caffe_shape=True), None, workers=2, prefetch=8)
    assert used is True
    assert_same(fast, rows)
    assert_same(grouped, rows)


def test_stats_report_decoding_apart_from_reading(no_leaks, tmp_path):
    rng = np.random.default_rng(5)
    make_encoded_lmdb(str(tmp_path / "enc"), [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)] * 16,
                      [0] * 16, ext=".jpg")
    make_raw_lmdb(str(tmp_path / "raw"), rng, 16, (3, 32, 32))
    out = {}
    for name in ("enc", "raw"):
        with Loader(CaffeLmdb(tmp_path / name), [CaffeTransform(phase="TEST", crop_size=28)], batch_size=4,
                    workers=2, shuffle=True, drop_last=True) as loader:
            collect(loader)
            out[name] = loader.stats()
    assert 0 < out["enc"]["decode_s"] <= out["enc"]["read_s"]
    assert out["raw"]["decode_s"] == 0 and out["raw"]["read_s"] > 0
