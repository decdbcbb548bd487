"""LmdbWriter: Caffe layout, batching, map growth, overwrite/resume rules, coexistence with readers."""
from __future__ import annotations

import os

import lmdb
import numpy as np
import pytest

from feedstock.caffe_pb import array_to_datum, parse_datum
from feedstock.loaders import CaffeLmdb
from feedstock.writers import LmdbWriter, caffe_key


def _read(path):
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return list(txn.cursor())
    finally:
        env.close()


def test_caffe_key():
    assert caffe_key(7, "cat/1.jpg") == "00000007_cat/1.jpg"
    assert caffe_key(12) == "00000012"  # MNIST converter: no name
    assert caffe_key(123456789, "x") == "123456789_x"
    with pytest.raises(ValueError, match="index=-1"):
        caffe_key(-1, "x")


def test_writes_a_caffe_lmdb_directory(tmp_path):
    path = tmp_path / "out" / "train_lmdb"
    arrays = [np.full((1, 2, 2), k, np.uint8) for k in range(3)]
    with LmdbWriter(path) as w:
        for k, arr in enumerate(arrays):
            assert w.put_datum(k, f"img{k}.png", array_to_datum(arr, k, encoded_false=True)) == f"0000000{k}_img{k}.png"
        w.put(b"zz", b"raw bytes")
        w.put("yy", b"\x00")
    assert sorted(os.listdir(path)) == ["data.mdb", "lock.mdb"]
    records = _read(path)
    assert [k for k, _ in records] == [b"00000000_img0.png", b"00000001_img1.png", b"00000002_img2.png", b"yy", b"zz"]
    assert records[1][1] == array_to_datum(arrays[1], 1, encoded_false=True).SerializeToString()
    assert parse_datum(records[2][1]).label == 2
    assert dict(records)[b"zz"] == b"raw bytes"


def test_batches_commit_every_txn_size(tmp_path):
    with LmdbWriter(tmp_path / "db", txn_size=3) as w:
        assert w.last_key() is None
        for k in range(4):
            w.put(caffe_key(k), b"v")
        assert w.count == 3 and w.last_key() == b"00000002"  # the 4th waits for the next batch
    assert w.count == 4 and len(_read(tmp_path / "db")) == 4


def test_map_full_doubles_and_retries(tmp_path):
    payload = bytes(range(256)) * 64  # 16 KiB
    with LmdbWriter(tmp_path / "db", map_size=64 * 1024, txn_size=50) as w:
        for k in range(120):
            w.put(caffe_key(k), payload)
    records = _read(tmp_path / "db")
    assert len(records) == 120 and all(v == payload for _, v in records)
    assert os.path.getsize(tmp_path / "db" / "data.mdb") > 120 * 16 * 1024


def test_refuses_existing_database_unless_overwrite(tmp_path):
    path = tmp_path / "db"
    with LmdbWriter(path) as w:
        w.put("old", b"1")
    with pytest.raises(FileExistsError, match=f"{path}.*overwrite=True"):
        LmdbWriter(path)
    with LmdbWriter(path, overwrite=True) as w:
        w.put("new", b"2")
    assert _read(path) == [(b"new", b"2")]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        LmdbWriter(tmp_path / "file")


def test_resume_appends_after_last_key(tmp_path):
    path = tmp_path / "db"
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        LmdbWriter(path, resume=True)
    with LmdbWriter(path) as w:
        w.put(caffe_key(0, "a"), b"1")
        w.put(caffe_key(1, "b"), b"2")
    with LmdbWriter(path, resume=True) as w:
        assert w.last_key() == b"00000001_b"
        w.put(caffe_key(2, "c"), b"3")
    assert [k for k, _ in _read(path)] == [b"00000000_a", b"00000001_b", b"00000002_c"]


def test_pending_records_committed_when_the_block_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with LmdbWriter(tmp_path / "db") as w:
            w.put("a", b"1")
            raise RuntimeError("boom")
    assert _read(tmp_path / "db") == [(b"a", b"1")]
    with pytest.raises(ValueError, match="closed"):
        w.put("b", b"2")


def test_writer_and_reader_in_one_process(tmp_path):
    path = tmp_path / "db"
    with LmdbWriter(path) as w:
        w.put_datum(0, "x", array_to_datum(np.zeros((1, 1, 1), np.uint8), 5))
    reader = CaffeLmdb(path)
    assert int(reader[0]["label"]) == 5  # the reader's env is open in this process now
    with LmdbWriter(path, overwrite=True) as w:  # py-lmdb would refuse a second env: the writer releases it
        w.put_datum(0, "y", array_to_datum(np.zeros((1, 1, 1), np.uint8), 9))
    fresh = CaffeLmdb(path)
    assert fresh.raw_key(0) == b"00000000_y" and int(fresh[0]["label"]) == 9


@pytest.mark.parametrize("kwargs, message", [
    ({"map_size": 0}, "map_size=0"), ({"txn_size": 0}, "txn_size=0"),
    ({"overwrite": True, "resume": True}, "exclude each other"),
])
def test_argument_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        LmdbWriter(tmp_path / "db", **kwargs)


def test_empty_key_rejected(tmp_path):
    with LmdbWriter(tmp_path / "db") as w:
        with pytest.raises(ValueError, match="non-empty"):
            w.put(b"", b"x")
