"""HDF5 through the Loader: the per-row path (before) against the batch path to Hdf5's slice reader (after).

An Otto-shaped HDF5 file (``--rows`` x 93 float32 features, float32 labels) is
read in batches of 64 with ``--workers`` workers (fork). Measured in this one run:

* in-process reads without the Loader: ``Hdf5[i]`` row by row (two h5py calls per
  row) and ``Hdf5.read_batch`` of 64 consecutive rows (one slice per field);
* the Loader's per-row path (``RowsOnly`` hides ``read_batch``): the "before";
* the Loader's batch path (the default): the "after", with ``--prefetch`` slots
  (several cheap batches go to a worker in one task once prefetch >= 3 x workers).

Sequential order (``shuffle=False``) is the target case (>= 1M rows/s with 2
workers); shuffled order is printed too: rows of a shuffled batch are scattered
over the file, so each costs an h5py call whatever the path (about 20 us here).
Each figure is the best of ``--repeats`` interleaved rounds (the machine is
shared); rates count rows delivered to the consumer after the first batch. On a
shared machine the Loader's rows per CPU second (main process and workers
together) says more than its rows/s: it does not depend on what else runs.

Usage: python bench/bench_hdf5.py [--rows 200000] [--workers 2] [--prefetch 16] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple, Union

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from bench_loader import rounds  # noqa: E402

from feedstock.loaders import Hdf5  # noqa: E402
from feedstock.pipeline import machine  # noqa: E402
from feedstock.pipeline.loader import Loader  # noqa: E402

FEATURES, BATCH = 93, 64


class RowsOnly(Hdf5):
    """The "before": Hdf5 without its batched read, so the Loader reads every row with its own h5py calls."""

    read_batch = None


def make_file(path: str, rows: int) -> None:
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["data"] = rng.poisson(1.0, size=(rows, FEATURES)).astype(np.float32)  # Otto-like counts
        f["label"] = rng.integers(0, 9, size=rows).astype(np.float32)


def cpu_seconds(pids: List[int]) -> float:
    """User + system CPU seconds of this process and of ``pids`` so far."""
    return time.process_time() + sum(machine.cpu_seconds(pid) or 0.0 for pid in pids)


def loader_rate(source: Hdf5, *, workers: int, prefetch: int, shuffle: bool, max_rows: int) -> Tuple[float, float]:
    """(rows/s, rows per CPU second of all its processes) delivered by the Loader after its first batch
    (workers started and warm), up to ``max_rows``."""
    with Loader(source, None, batch_size=BATCH, workers=workers, prefetch=prefetch, shuffle=shuffle, seed=0,
                start_method="fork") as loader:
        it = iter(loader)
        next(it)
        pids = loader.worker_pids()
        start, cpu, rows = time.perf_counter(), cpu_seconds(pids), 0
        for batch in it:
            rows += len(batch["data"])
            if rows >= max_rows:
                break
        return rows / (time.perf_counter() - start), rows / max(cpu_seconds(pids) - cpu, 1e-9)


def in_process_rate(source: Hdf5, *, batched: bool, max_rows: int) -> float:
    source[0]  # opens the file
    rows = min(max_rows, len(source)) // BATCH * BATCH
    start = time.perf_counter()
    if batched:
        for lo in range(0, rows, BATCH):
            source.read_batch(np.arange(lo, lo + BATCH))
    else:
        for i in range(rows):
            source[i]
    return rows / (time.perf_counter() - start)


Rate = Union[float, Tuple[float, float]]


def best(repeats: int, contenders: Dict[str, Callable[[], Rate]]) -> Dict[str, Tuple[float, float]]:
    """Each contender's best (rows/s, rows per CPU second) over ``repeats`` interleaved rounds."""
    pairs = {name: [r if isinstance(r, tuple) else (r, r) for r in got]
             for name, got in zip(contenders, rounds(repeats, *contenders.values()))}
    return {name: (max(r[0] for r in got), max(r[1] for r in got)) for name, got in pairs.items()}


def check_same_batches(path: str, workers: int) -> None:
    """The batch path yields exactly the per-row path's batches (shuffled, two epochs' worth of checks)."""
    kw = dict(batch_size=BATCH, workers=workers, shuffle=True, seed=1, start_method="fork")
    with Loader(Hdf5(path), **kw) as fast, Loader(RowsOnly(path), **kw) as rows:
        for a, b, _ in zip(fast, rows, range(20)):
            if not all(np.array_equal(a[k], b[k]) for k in a):
                raise SystemExit("the batch path differs from the per-row path")


def contenders(path: str, args: argparse.Namespace, shuffle: bool) -> Dict[str, Callable[[], Rate]]:
    w, p = args.workers, args.prefetch
    slow_rows = 20_000  # the per-row paths are slow: a part of the file is plenty
    return {
        "read_batch in-process": lambda: in_process_rate(Hdf5(path), batched=True, max_rows=args.rows),
        "rows in-process": lambda: in_process_rate(Hdf5(path), batched=False, max_rows=slow_rows),
        "before": lambda: loader_rate(RowsOnly(path), workers=w, prefetch=p, shuffle=shuffle, max_rows=slow_rows),
        "after": lambda: loader_rate(Hdf5(path), workers=w, prefetch=p, shuffle=shuffle, max_rows=args.rows),
        "after, prefetch 4": lambda: loader_rate(Hdf5(path), workers=w, prefetch=4, shuffle=shuffle,
                                                 max_rows=args.rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--prefetch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "otto.h5")
        make_file(path, args.rows)
        check_same_batches(path, args.workers)
        w, p = args.workers, args.prefetch
        for shuffle in (False, True):
            rates = best(args.repeats, contenders(path, args, shuffle))
            order = "shuffled" if shuffle else "sequential"
            print(f"HDF5 {args.rows} x {FEATURES} float32, batches of {BATCH}, {order} order, {w} workers, "
                  f"best of {args.repeats} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
            (rows_rate, _), (batch_rate, _) = rates["rows in-process"], rates["read_batch in-process"]
            (before, before_cpu), (after, after_cpu) = rates["before"], rates["after"]
            print(f"  in-process Hdf5[i] per row             : {rows_rate:12,.0f} rows/s")
            print(f"  in-process read_batch(64 consecutive)  : {batch_rate:12,.0f} rows/s (one core; no Loader)")
            print(f"  Loader per-row path (before)           : {before:12,.0f} rows/s  {before_cpu:12,.0f} rows/CPU-s")
            print(f"  Loader batch path (after), prefetch {p:<3}: {after:12,.0f} rows/s  {after_cpu:12,.0f} rows/CPU-s")
            print(f"  Loader batch path, prefetch 4          : {rates['after, prefetch 4'][0]:12,.0f} rows/s")
            print(f"  after/before: {after / before:.1f}x rows/s, {after_cpu / before_cpu:.1f}x rows per CPU second")
            if not shuffle:
                verdict = "PASS" if after >= 1e6 else "below target in this run"
                print(f"  target >= 1,000,000 rows/s with {w} workers (sequential): {verdict}; "
                      f"rows per CPU second x {w} cores = {after_cpu * w:,.0f} (upper bound with the cores to itself)")

if __name__ == "__main__":
    main()
