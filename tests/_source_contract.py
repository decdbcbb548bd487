"""The Source contract, checked the same way for every source type (used by tests/test_loaders_*.py)."""
from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Sequence

import numpy as np
import pytest

from feedstock.loaders.base import Source
from feedstock.protocols import BatchReadable


def assert_same_sample(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray], where: str = "") -> None:
    assert sorted(a) == sorted(b), where
    for name in a:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        assert x.dtype == y.dtype, f"{where} field {name}: {x.dtype} != {y.dtype}"
        assert x.shape == y.shape, f"{where} field {name}: {x.shape} != {y.shape}"
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"{where} field {name} differs"


def probe_indices(n: int) -> List[int]:
    """First, second, middle and last records (deduplicated, in order)."""
    return sorted({0, min(1, n - 1), n // 2, n - 1})


def read_all(source: Source, indices: Sequence[int]) -> List[Dict[str, np.ndarray]]:
    """Module-level so a spawned child can unpickle it; opens handles in the reading process."""
    return [source[i] for i in indices]


def check_indexing(source: Source) -> None:
    n = len(source)
    assert n > 0
    for i in probe_indices(n):
        assert_same_sample(source[i], source[i - n], f"[{i}] vs [{i - n}]")
        assert isinstance(source.key(i), str) and source.key(i)
        assert source.key(i) == source.key(i - n)
    assert len({source.key(i) for i in range(n)}) == n, "keys must name records uniquely"
    for bad in (n, -n - 1):
        with pytest.raises(IndexError):
            source[bad]
        with pytest.raises(IndexError):
            source.key(bad)


def check_spec(source: Source) -> None:
    spec = source.spec()
    for i in probe_indices(len(source)):
        sample = source[i]
        assert sorted(spec) == sorted(sample)
        for name, value in sample.items():
            assert isinstance(value, np.ndarray), f"{name} must be an ndarray, got {type(value)}"
            assert value.dtype == spec[name].dtype, f"{name}: {value.dtype} vs spec {spec[name]}"
            assert spec[name].matches(value), f"{name}: shape {value.shape} vs spec {spec[name]}"


def check_read_batch(source: Source) -> None:
    """A batched read (when the source has one) equals the records stacked, also written into ``out``."""
    if not isinstance(source, BatchReadable):
        return
    n = len(source)
    indices = [n - 1, 0, n // 2, 0, -1]
    rows = [source[i] for i in indices]
    got = source.read_batch(indices)
    if got is NotImplemented:  # records that cannot be stacked (encoded images): read one by one
        return
    stacked = {name: np.stack([np.asarray(r[name]) for r in rows]) for name in rows[0]}
    assert_same_sample(got, stacked, "read_batch")
    out = {name: np.zeros_like(v) for name, v in stacked.items()}
    assert source.read_batch(indices, out=out) is not NotImplemented
    assert_same_sample(out, stacked, "read_batch(out=...)")


def check_pickle(source: Source) -> None:
    indices = probe_indices(len(source))
    expected = read_all(source, indices)  # handles are open now: pickling must drop them
    clone = pickle.loads(pickle.dumps(source))
    assert len(clone) == len(source)
    assert [clone.key(i) for i in indices] == [source.key(i) for i in indices]
    for a, b in zip(read_all(clone, indices), expected):
        assert_same_sample(a, b, "after pickle")


def check_child_process(sources: Sequence[Source], method: str) -> None:
    """Every source read in a child started with ``method`` gives the parent's results."""
    ctx = multiprocessing.get_context(method)
    plans = [(s, list(range(len(s))) if len(s) <= 8 else probe_indices(len(s))) for s in sources]
    expected = [read_all(s, idx) for s, idx in plans]  # opened in the parent first (fork inherits it)
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        futures = [pool.submit(read_all, s, idx) for s, idx in plans]
        results = [f.result(timeout=120) for f in futures]
    for source, got, want in zip(sources, results, expected):
        for a, b in zip(got, want):
            assert_same_sample(a, b, f"{source!r} in a {method} child")


def _send_reads(source: Source, indices: Sequence[int], conn) -> None:
    try:
        conn.send(("ok", read_all(source, indices)))
    except BaseException as e:  # report anything to the parent instead of dying silently
        conn.send(("error", repr(e)))
    finally:
        conn.close()


def check_inherited_by_fork(source: Source) -> None:
    """A source object inherited through fork (not pickled), with handles opened in the parent, still reads right."""
    ctx = multiprocessing.get_context("fork")
    indices = probe_indices(len(source))
    expected = read_all(source, indices)
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_send_reads, args=(source, indices, child_end))
    proc.start()
    child_end.close()
    try:
        assert parent_end.poll(60), "child sent nothing within 60 s"
        status, got = parent_end.recv()
    finally:
        proc.join(30)
    assert status == "ok", got
    for a, b in zip(got, expected):
        assert_same_sample(a, b, f"{source!r} inherited by fork")
    assert proc.exitcode == 0


def check_contract(source: Source) -> None:
    """All in-process parts of the contract."""
    check_indexing(source)
    check_spec(source)
    check_read_batch(source)
    check_pickle(source)
