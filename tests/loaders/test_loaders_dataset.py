"""The door for users' own datasets: every record kind, batches in the dataset's structure, every bad record."""
from __future__ import annotations

import dataclasses
import pickle
import re

import numpy as np
import pytest
from dataset_helpers import Failing, Item, Keyed, OnlyIter, Pair, Records, TupleOnly, WhichWorker, image

from feedstock.errors import WorkerError
from feedstock.loaders.array import ArraySource
from feedstock.loaders.dataset import DatasetSource, adapt, as_source
from feedstock.pipeline.loader import Loader


def _stack(values, dtype=None):
    return np.stack([np.asarray(v, dtype=dtype) for v in values])


def _batches(dataset, workers=0, batch_size=4, **kw):
    kw = dict(dict(shuffle=False, drop_last=False, copy=True), **kw)
    with Loader(dataset, batch_size=batch_size, workers=workers, **kw) as loader:
        return list(loader)


# What each record kind's batch of records lo..hi must be, built by hand from the records themselves.
def _expected(kind, lo, hi):
    idx = range(lo, hi)
    images = _stack([image(i) for i in idx])
    if kind == "dict":
        return {"image": images, "label": np.arange(lo, hi, dtype=np.int64)}
    if kind == "tuple":
        return (images, np.arange(lo, hi, dtype=np.int64))
    if kind == "list":
        return [images, np.arange(lo, hi, dtype=np.int32)]
    if kind == "namedtuple":
        return Pair(images, np.arange(lo, hi, dtype=np.float64))
    if kind == "dataclass":
        return Item(images, np.arange(lo, hi, dtype=np.int16))
    if kind == "array":
        return images
    if kind == "number":
        return np.arange(lo, hi, dtype=np.float64) / 2
    return {3: images, 7: np.array([i % 2 == 0 for i in idx])}  # intkeys


def _assert_same_structure(got, want):
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, dict):
        assert list(got) == list(want)
        pairs = [(got[k], want[k]) for k in want]
    elif dataclasses.is_dataclass(want):
        pairs = [(getattr(got, f.name), getattr(want, f.name)) for f in dataclasses.fields(want)]
    elif isinstance(want, (tuple, list)):
        assert len(got) == len(want)
        pairs = list(zip(got, want))
    else:
        pairs = [(got, want)]
    for g, w in pairs:
        assert g.dtype == w.dtype and g.shape == w.shape and np.array_equal(g, w)


@pytest.mark.parametrize("kind", ["dict", "tuple", "list", "namedtuple", "dataclass", "array", "number", "intkeys"])
def test_every_record_kind_batches_in_its_own_structure(kind):
    batches = _batches(Records(kind, n=10), workers=0)
    assert len(batches) == 3
    for b, (lo, hi) in zip(batches, [(0, 4), (4, 8), (8, 10)]):
        _assert_same_structure(b, _expected(kind, lo, hi))


def test_a_list_of_dicts_and_a_numpy_array_are_datasets(no_leaks):
    records = [{"x": np.full(3, i, np.uint8), "y": np.float32(i)} for i in range(7)]
    got = _batches(records, workers=2, batch_size=3)
    assert [b["x"][:, 0].tolist() for b in got] == [[0, 1, 2], [3, 4, 5], [6]]
    assert got[0]["y"].dtype == np.float32 and got[2]["y"].tolist() == [6.0]
    array = np.arange(24, dtype=np.int16).reshape(6, 4)
    got = _batches(array, workers=0, batch_size=4)
    assert np.array_equal(got[0], array[:4]) and np.array_equal(got[1], array[4:])


def test_workers_and_spawn_give_the_batches_of_the_in_process_loader(no_leaks):
    kw = dict(shuffle=True, seed=5, drop_last=True, batch_size=3)
    ref = _batches(Records("namedtuple", n=13), workers=0, **kw)
    for method in ("fork", "spawn"):
        got = _batches(Records("namedtuple", n=13), workers=2, start_method=method, **kw)
        assert len(got) == len(ref) == 4
        for g, r in zip(got, ref):
            _assert_same_structure(g, r)
    labels = sorted(int(v) for b in ref for v in b.label)
    assert len(set(labels)) == 12 and set(labels) <= set(range(13))  # a permutation, one record dropped


def test_our_sources_pass_through_unchanged():
    source = ArraySource(data=np.zeros((4, 2)), label=np.arange(4))
    assert adapt(source) == (source, None)
    assert as_source(source) is source
    adapted = as_source(Records("tuple"))
    assert isinstance(adapted, DatasetSource) and as_source(adapted) is adapted  # adapted once only


def test_layout_and_key():
    source = as_source(Records("dataclass", n=5))
    spec = source.spec()
    assert list(spec) == ["image", "label"]
    assert spec["image"].shape == (2, 3) and spec["image"].dtype == np.float32 and spec["label"].dtype == np.int16
    assert source.key(3) == "3" and as_source(Keyed("tuple")).key(3) == "sample-003.png"
    assert np.array_equal(source[4]["image"], image(4)) and source[-1]["label"] == 4


def test_the_adapted_source_pickles_and_reads_in_batches():
    source = as_source(Records("tuple", n=6))
    clone = pickle.loads(pickle.dumps(source))
    assert np.array_equal(clone[2]["0"], image(2))
    stacked = clone.read_batch([5, 1])
    assert np.array_equal(stacked["0"], _stack([image(5), image(1)])) and stacked["1"].tolist() == [5, 1]
    out = {"0": np.zeros((2, 2, 3), np.float32), "1": np.zeros(2, np.int64)}
    assert clone.read_batch([0, 3], out=out)["1"].tolist() == [0, 3] and np.array_equal(out["0"][1], image(3))


# ----- bad records: one line naming the index, the field and both layouts -------------------------
BAD = {
    "shape": ("dict", {"image": image(0, (3, 2)), "label": 1}, r"record 6: field 'image' has shape \(3, 2\) float32, "
              r"record 0 had shape \(2, 3\) float32"),
    "dtype": ("tuple", (image(0).astype(np.float64), 6), r"record 6: field '0' has shape \(2, 3\) float64, record 0 "
              r"had shape \(2, 3\) float32"),
    "number dtype": ("tuple", (image(6), 6.5), r"record 6: field '1' has shape \(\) float64, record 0 had shape \(\) int64"),
    "fields": ("dict", {"image": image(6), "target": 1}, r"record 6 has fields \['image', 'target'\], record 0 had "
               r"\['image', 'label'\]"),
    "length": ("tuple", (image(6),), r"record 6 has 1 fields, record 0 had 2"),
    "structure": ("dict", (image(6), 6), r"record 6 is a tuple, record 0 was a dict"),
    "class": ("namedtuple", Item(image(6), 6.0), r"record 6 is a Item, record 0 was a Pair"),
    "string": ("dict", {"image": image(6), "label": "six"}, r"field 'label' is a str"),
    "nested": ("dict", {"image": image(6), "label": [6]}, r"field 'label' is a list: nested records"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_record_is_one_line_naming_its_index_field_and_shapes(case, no_leaks):
    kind, record, message = BAD[case]
    for workers in (0, 2):
        with pytest.raises(WorkerError, match=message) as info:
            _batches(Keyed(kind, n=10, bad={6: record}), workers=workers)
        assert info.value.key == "sample-006.png"
        assert re.search(message, str(info.value).splitlines()[0])  # the whole message is its first line


@pytest.mark.parametrize("case", ["shape", "dtype", "fields", "structure", "string"])
def test_a_bad_record_is_skipped_and_reported(case, no_leaks):
    kind, record, message = BAD[case]
    with Loader(Records(kind, n=12, bad={6: record}), batch_size=4, workers=2, shuffle=False, on_error="skip",
                max_bad_fraction=0.5, copy=True) as loader:
        batches = list(loader)
        report = loader.report()
    labels = [int(v) for b in batches for v in (b["label"] if kind == "dict" else b[1])]
    assert labels == [0, 1, 2, 3, 4, 5, 7, 7, 8, 9, 10, 11]  # the bad row takes the next good record
    assert report["bad_records"] == 1 and report["skipped"][0]["key"] == "6"
    assert "record 6" in report["skipped"][0]["error"] or "field 'label'" in report["skipped"][0]["error"]


@pytest.mark.parametrize("record, message", [
    ({"image": image(0), "name": "a.png"}, r"field 'name' is a str: batches hold numbers and arrays only"),
    ({"image": image(0), "meta": {"a": 1}}, r"field 'meta' is a dict: nested records are not supported"),
    ((image(0), np.array([object()])), r"field '1' has dtype object"),
    ((image(0), None), r"field '1' is a builtins.NoneType"),
    ((), r"record 0 is an empty tuple"),
])
def test_a_first_record_a_batch_cannot_hold_is_refused_at_the_door(record, message):
    with pytest.raises(TypeError, match=message):
        Loader([record, record], batch_size=1, workers=0)


@pytest.mark.parametrize("dataset, message", [
    (OnlyIter(), r"OnlyIter is not a map-style dataset: feedstock needs random access .*resume mid-epoch"),
    ((x for x in range(3)), r"generator is not a map-style dataset"),
    (TupleOnly(), r"TupleOnly is not a map-style dataset"),
])
def test_an_iterable_only_dataset_is_refused_saying_why(dataset, message):
    with pytest.raises(TypeError, match=message):
        Loader(dataset, batch_size=1, workers=0)


def test_mapping_empty_and_failing_datasets_are_refused():
    with pytest.raises(TypeError, match="is a mapping: a dataset is indexed by position"):
        Loader({0: np.zeros(2)}, batch_size=1, workers=0)
    with pytest.raises(ValueError, match="list is empty"):
        Loader([], batch_size=1, workers=0)
    with pytest.raises(ValueError, match=r"Failing\[0\] failed, so the record layout is unknown: OSError: disk gone"):
        Loader(Failing(), batch_size=1, workers=0)


def test_workers_seed_global_generators_apart_and_run_worker_init(no_leaks):
    from dataset_helpers import note_worker

    source = as_source(WhichWorker(), seed=3, worker_init=note_worker)
    with Loader(source, batch_size=2, workers=2, shuffle=False, copy=True) as loader:
        rows = [(int(i), int(w), float(r)) for b in loader for i, w, r in zip(b["0"], b["1"], b["2"])]
    assert {w for _, w, _ in rows} <= {0, 1} and len({w for _, w, _ in rows}) >= 1
    assert len({r for _, _, r in rows}) == 16  # no two workers repeat the parent's generator
    with Loader(as_source(WhichWorker(), worker_init=note_worker), batch_size=2, workers=0, shuffle=False) as loader:
        assert int(next(iter(loader))["1"][0]) == -1  # in-process: no worker, no worker_init (as torch)


def test_the_door_does_not_import_torch_for_numpy_records():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from feedstock.pipeline.loader import Loader; "
            "l = Loader([(np.zeros(2), 1)] * 4, batch_size=2, workers=0); list(l); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
