"""ArraySource: indexing, spec, read_batch, read-only records, pickling, validation."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from feedstock.loaders.array import ArraySource
from feedstock.spec import ArraySpec


def test_records_spec_and_keys():
    x = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    y = np.array([3, 1, 4, 1])
    src = ArraySource(data=x, label=y)
    assert len(src) == 4 and src.key(2) == "row 2"
    assert src.spec() == {"data": ArraySpec((2, 3), np.float32), "label": ArraySpec((), y.dtype)}
    rec = src[-1]
    assert np.array_equal(rec["data"], x[3]) and rec["label"].shape == () and int(rec["label"]) == 1
    with pytest.raises(IndexError, match="out of range"):
        src[4]


def test_read_batch_gathers_rows_in_order():
    x = np.arange(10) * 10
    src = ArraySource(v=x)
    assert src.read_batch([7, 0, 7, 3])["v"].tolist() == [70, 0, 70, 30]
    with pytest.raises(IndexError):
        src.read_batch([10])


def test_records_are_read_only_and_the_caller_array_is_untouched():
    x = np.zeros((3, 2))
    src = ArraySource(data=x)
    with pytest.raises(ValueError, match="read-only"):
        src[0]["data"][0] = 1
    x[0, 0] = 5  # the caller's array stays writable; the source sees its data
    assert src[0]["data"][0] == 5


def test_pickle_round_trip_stays_read_only():
    src = pickle.loads(pickle.dumps(ArraySource(a=np.arange(6).reshape(3, 2))))
    assert src[1]["a"].tolist() == [2, 3]
    assert not src.arrays["a"].flags.writeable


def test_validation():
    with pytest.raises(ValueError, match="at least one field"):
        ArraySource()
    with pytest.raises(ValueError, match="differ in length"):
        ArraySource(a=np.zeros(3), b=np.zeros(4))
    with pytest.raises(ValueError, match="scalar"):
        ArraySource(a=np.float32(1))


def test_read_batch_gathers_into_given_arrays():
    data = np.arange(30, dtype=np.int16).reshape(10, 3)
    src = ArraySource(data=data, label=np.arange(10, dtype=np.int64) * 2)
    out = {"data": np.zeros((3, 3), np.int16), "label": np.zeros(3, np.int64)}
    got = src.read_batch([7, 0, 9], out=out)
    assert got["data"] is out["data"] and got["label"] is out["label"]
    np.testing.assert_array_equal(out["data"], [[21, 22, 23], [0, 1, 2], [27, 28, 29]])
    np.testing.assert_array_equal(out["label"], [14, 0, 18])
    with pytest.raises(IndexError, match="outside"):
        src.read_batch([10], out=out)  # no wrap-around, though the gather itself runs in 'wrap' mode
