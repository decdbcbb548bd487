"""The thread budget: workers single-threaded, the consumer's BLAS at the cores the workers leave."""
from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from feedstock import threads
from feedstock.pipeline.loader import Loader
from feedstock.spec import ArraySpec


def _blas_threads() -> set:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


@pytest.mark.parametrize("workers,cores,want", [(0, 2, 2), (1, 2, 1), (2, 2, 1), (5, 2, 1), (2, 16, 14), (3, 4, 1)])
def test_consumer_threads_are_the_cores_the_workers_leave(workers, cores, want):
    assert threads.consumer_threads(workers, cores) == want


def test_budget_sets_blas_and_restores_it(monkeypatch):
    monkeypatch.delenv("FEEDSTOCK_TRAINER_THREADS", raising=False)
    if not _blas_threads():
        pytest.skip("numpy has no BLAS pool threadpoolctl can see")
    before = _blas_threads()
    with threads.budget(workers=1, cores=3) as split:
        assert _blas_threads() == {2}
        assert (split.cores, split.workers, split.consumer, split.controlled) == (3, 1, 2, True)
        assert "trainer 2 BLAS thread(s) + 1 worker(s) x 1 thread" in split.line()
    assert _blas_threads() == before
    monkeypatch.setenv("FEEDSTOCK_TRAINER_THREADS", "1")
    with threads.budget(workers=0, cores=8) as split:
        assert split.consumer == 1 and _blas_threads() == {1}
    monkeypatch.setenv("FEEDSTOCK_TRAINER_THREADS", "two")
    with pytest.raises(ValueError, match="FEEDSTOCK_TRAINER_THREADS='two'"):
        with threads.budget(workers=0):
            pass


class _ThreadReport:
    """A source whose records say how many threads the reading process's pools have."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i):
        import cv2

        blas = _blas_threads() or {1}
        return {"data": np.array([max(blas), cv2.getNumThreads()], np.int64)}

    def key(self, i):
        return str(i)

    def spec(self):
        return {"data": ArraySpec((2,), np.int64)}


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_workers_run_single_threaded(start_method, no_leaks):
    with threads.budget(workers=0, cores=2):  # the parent's pools at 2: workers must not keep that
        with Loader(_ThreadReport(), batch_size=2, workers=2, start_method=start_method) as loader:
            got = np.concatenate([b["data"].copy() for b in loader])
    assert got.tolist() == [[1, 1]] * 4


def test_train_report_prints_the_split(no_leaks):
    from feedstock.trainer import train
    from feedstock.trainer.datasets import load_fashion_mnist

    tr, _ = load_fashion_mnist()
    report = train("lenet", (tr.images[:64], tr.labels[:64]), None, {"max_iter": 2, "display": 0}, None,
                   batch_size=32, workers=1, backend="numpy", plots=False)
    want = threads.consumer_threads(1)
    assert f"trainer {want} BLAS thread(s) + 1 worker(s)" in report.threads
    assert report.threads in report.summary()


class _NativeThreads:
    """Each record: the threads of the reading process that Python did not start (native pools)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        import os
        import threading

        return {"native": np.int64(len(os.listdir("/proc/self/task")) - threading.active_count())}


def test_a_forked_worker_starts_no_blas_pool(no_leaks):
    """Setting OpenBLAS's count in a forked worker made it start its pool again (about 50 ms of spinning
    CPU per worker); the worker now inherits one thread from the fork and sets nothing."""
    if not _blas_threads():
        pytest.skip("numpy has no BLAS pool threadpoolctl can see")
    with threads.budget(workers=0, cores=2):  # the parent's BLAS pool at 2 threads
        a = np.ones((64, 64))
        a @ a
        with Loader(_NativeThreads(), batch_size=2, workers=1, start_method="fork", shuffle=False) as loader:
            got = next(iter(loader))["native"].tolist()
        assert _blas_threads() == {2}  # the parent's count is back after the fork
    assert got == [0, 0]
