"""HDF5 through the Loader at memory speed: the memory-mapped reader against the h5py reader, in one run.

An Otto-shaped HDF5 file (``--rows`` x 93 float32 features, float32 labels; by
default 61,878 rows as the Otto training set) is read in batches of ``--batch``
(256) rows, sequential and shuffled. Measured in this one run, best of
``--repeats`` interleaved rounds (the machine is shared):

* in-process ``read_batch`` (no Loader, one core): the memory map of the
  dataset's bytes (the default for contiguous datasets) against h5py reads
  (``hdf5_rows.MEMMAP = False``: the reader before issue 22);
* the Loader with ``--workers`` workers (fork) and the default prefetch, both
  readers; and the memory-mapped reader with ``--prefetch`` slots.

Targets (issue 22): shuffled, 2 workers, default settings >= 1M rows/s;
in-process >= 3M rows/s. Rates count rows delivered after the first batch;
rows per CPU second (all the Loader's processes) depends less on the load.

Usage: python bench/bench_hdf5.py [--rows 61878] [--batch 256] [--workers 2] [--prefetch 16] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from bench_loader import rounds  # noqa: E402

from feedstock.loaders import Hdf5, hdf5_rows  # noqa: E402
from feedstock.pipeline import machine  # noqa: E402
from feedstock.pipeline.loader import Loader  # noqa: E402

FEATURES, BATCH = 93, 256


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


def h5py_reader(fn: Callable[[], Rate]) -> Callable[[], Rate]:
    """``fn`` run with the h5py reader (the forked workers inherit the switch)."""
    def run() -> Rate:
        hdf5_rows.MEMMAP = False
        try:
            return fn()
        finally:
            hdf5_rows.MEMMAP = True
    return run


def loader_rate(source: Hdf5, *, workers: int, prefetch: Optional[int], shuffle: bool,
                max_rows: int) -> Tuple[float, float]:
    """(rows/s, rows per CPU second of all its processes) delivered by the Loader after its first batch
    (workers started and warm), up to ``max_rows``; ``prefetch=None``: the Loader's default."""
    kw = {} if prefetch is None else {"prefetch": prefetch}
    with Loader(source, None, batch_size=BATCH, workers=workers, shuffle=shuffle, seed=0,
                start_method="fork", **kw) as loader:
        it = iter(loader)
        next(it)
        pids = loader.worker_pids()
        start, cpu, rows = time.perf_counter(), cpu_seconds(pids), 0
        for batch in it:
            rows += len(batch["data"])
            if rows >= max_rows:
                break
        return rows / (time.perf_counter() - start), rows / max(cpu_seconds(pids) - cpu, 1e-9)


def in_process_rate(source: Hdf5, *, shuffle: bool, max_rows: int) -> float:
    """Rows/s of ``read_batch`` into a reused batch (as a worker fills a slot), one core."""
    source[0]  # opens the file
    order = np.random.default_rng(0).permutation(len(source)) if shuffle else np.arange(len(source))
    out = {name: np.empty((BATCH, *spec.shape), spec.dtype) for name, spec in source.spec().items()}
    rows, start = 0, time.perf_counter()
    while rows < max_rows:
        for lo in range(0, len(order) - BATCH + 1, BATCH):
            source.read_batch(order[lo : lo + BATCH], out=out)
        rows += len(order) // BATCH * BATCH
    return rows / (time.perf_counter() - start)


Rate = Union[float, Tuple[float, float]]


def best(repeats: int, contenders: Dict[str, Callable[[], Rate]]) -> Dict[str, Tuple[float, float]]:
    """Each contender's best (rows/s, rows per CPU second) over ``repeats`` interleaved rounds."""
    pairs = {name: [r if isinstance(r, tuple) else (r, r) for r in got]
             for name, got in zip(contenders, rounds(repeats, *contenders.values()))}
    return {name: (max(r[0] for r in got), max(r[1] for r in got)) for name, got in pairs.items()}


def check_same_batches(path: str, workers: int) -> None:
    """The memory-mapped batch path yields exactly the per-row h5py path's batches (shuffled)."""
    kw = dict(batch_size=BATCH, workers=workers, shuffle=True, seed=1, start_method="fork")
    hdf5_rows.MEMMAP = False
    with Loader(RowsOnly(path), **kw) as rows:
        want = [{k: v.copy() for k, v in b.items()} for b, _ in zip(rows, range(10))]
    hdf5_rows.MEMMAP = True
    with Loader(Hdf5(path), **kw) as fast:
        if Hdf5(path).layouts() != {"data": "memmap", "label": "memmap"}:
            raise SystemExit(f"expected memory-mapped datasets, got {Hdf5(path).layouts()}")
        for a, b in zip(fast, want):
            if not all(np.array_equal(a[k], b[k]) for k in a):
                raise SystemExit("the memory-mapped path differs from the per-row h5py path")


def contenders(path: str, args: argparse.Namespace, shuffle: bool) -> Dict[str, Callable[[], Rate]]:
    w, p, n = args.workers, args.prefetch, max(args.rows * 4, 250_000)
    return {
        "in-process mmap": lambda: in_process_rate(Hdf5(path), shuffle=shuffle, max_rows=n),
        "in-process h5py": h5py_reader(lambda: in_process_rate(Hdf5(path), shuffle=shuffle, max_rows=n // 4)),
        "loader mmap": lambda: loader_rate(Hdf5(path), workers=w, prefetch=None, shuffle=shuffle, max_rows=n),
        "loader h5py": h5py_reader(lambda: loader_rate(Hdf5(path), workers=w, prefetch=None, shuffle=shuffle,
                                                       max_rows=n // 4)),
        "loader mmap prefetch": lambda: loader_rate(Hdf5(path), workers=w, prefetch=p, shuffle=shuffle, max_rows=n),
    }


def main() -> None:
    global BATCH
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=61_878)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--prefetch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    BATCH = args.batch
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "otto.h5")
        make_file(path, args.rows)
        check_same_batches(path, args.workers)
        w, p = args.workers, args.prefetch
        for shuffle in (False, True):
            r = best(args.repeats, contenders(path, args, shuffle))
            order = "shuffled" if shuffle else "sequential"
            print(f"HDF5 {args.rows} x {FEATURES} float32, batches of {BATCH}, {order}, {w} workers, best of "
                  f"{args.repeats} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
            print(f"  in-process read_batch, memory map      : {r['in-process mmap'][0]:12,.0f} rows/s (one core)")
            print(f"  in-process read_batch, h5py (before)   : {r['in-process h5py'][0]:12,.0f} rows/s")
            for name, label in (("loader mmap", "Loader, memory map, default prefetch"),
                                ("loader h5py", "Loader, h5py (before), default prefetch"),
                                ("loader mmap prefetch", f"Loader, memory map, prefetch {p}")):
                print(f"  {label:<40}: {r[name][0]:12,.0f} rows/s {r[name][1]:12,.0f} rows/CPU-s")
            print(f"  memory map / h5py: in-process {r['in-process mmap'][0] / r['in-process h5py'][0]:.1f}x, "
                  f"Loader {r['loader mmap'][0] / r['loader h5py'][0]:.1f}x")
            if shuffle:
                for what, got, goal in (("Loader, default settings", r["loader mmap"][0], 1e6),
                                        ("in-process", r["in-process mmap"][0], 3e6)):
                    verdict = "PASS" if got >= goal else "below target in this run"
                    print(f"  target {what} shuffled >= {goal:,.0f} rows/s: {verdict}")


if __name__ == "__main__":
    main()
