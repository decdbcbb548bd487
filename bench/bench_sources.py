"""Benchmark the sources against bare baselines measured in the same run.

1. CaffeLmdb random access to ~3 KB raw Datums vs bare py-lmdb ``txn.get`` +
   ``Datum.ParseFromString`` + ``np.frombuffer`` (requirement: >= 0.5x of bare).
2. CsvTable load of an Otto-shaped table (61,878 x 93 counts, Class_1..Class_9)
   vs ``np.loadtxt`` of the numeric columns alone and the ``csv`` module.

Usage: python bench/bench_sources.py [--records 20000] [--rounds 5] [--rows 61878]
Data is generated into a temporary directory that is removed afterwards.
"""
from __future__ import annotations

import argparse
import csv
import tempfile
import time
from typing import Callable, List

import lmdb
import numpy as np

from feedstock.caffe_pb import Datum
from feedstock.fixtures.synthetic import make_otto_csv, make_raw_lmdb
from feedstock.loaders import CaffeLmdb, CsvTable
from feedstock.loaders.caffe_lmdb import release_env


def best_of(rounds: int, fn: Callable[[], None]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bare_lmdb(path: str, keys: List[bytes]) -> Callable[[], None]:
    def run() -> None:
        env = lmdb.open(path, readonly=True, lock=False, readahead=False)
        with env.begin() as txn:
            for key in keys:
                d = Datum()
                d.ParseFromString(txn.get(key))
                np.frombuffer(d.data, dtype=np.uint8).reshape(d.channels, d.height, d.width)
                _ = d.label  # the field access is part of the measured read
        env.close()  # py-lmdb allows one env per path and process (docs/caffe-compat.md, note 22)
    return run


def ours_lmdb(src: CaffeLmdb, order: np.ndarray, batched: bool) -> Callable[[], None]:
    def run() -> None:
        if batched:
            for lo in range(0, len(order), 256):
                src.read_batch(order[lo:lo + 256])
        else:
            for i in order.tolist():
                src[i]
    return run


def bench_lmdb(tmp: str, records: int, rounds: int) -> None:
    path = f"{tmp}/raw_lmdb"
    rng = np.random.default_rng(0)
    make_raw_lmdb(path, rng, records, (3, 32, 32))
    start = time.perf_counter()
    src = CaffeLmdb(path)  # builds the key index once (one cursor pass over the keys)
    index_s = time.perf_counter() - start
    order = rng.permutation(records)
    keys = [src.raw_key(int(i)) for i in order]
    bare, ours, many = [], [], []
    for _ in range(rounds):  # interleaved so that machine noise hits all three alike
        release_env(path)  # py-lmdb allows one env per path and process (docs/caffe-compat.md, note 22)
        bare.append(best_of(1, bare_lmdb(path, keys)))
        ours.append(best_of(1, ours_lmdb(src, order, batched=False)))
        many.append(best_of(1, ours_lmdb(src, order, batched=True)))
    bare, ours, many = min(bare), min(ours), min(many)
    per = lambda t: t / records * 1e6  # noqa: E731
    print(f"LMDB random access, {records} raw Datums 3x32x32 (3,085 B values), best of {rounds}:")
    print(f"  bare txn.get+ParseFromString+frombuffer : {per(bare):6.2f} us/record")
    print(f"  CaffeLmdb key index built once          : {index_s * 1e3:6.1f} ms for {records} keys")
    print(f"  CaffeLmdb[i] (env opened lazily)        : {per(ours):6.2f} us/record   ratio vs bare {bare / ours:.2f}x")
    print(f"  CaffeLmdb.read_batch(256 per call)      : {per(many):6.2f} us/record   ratio vs bare {bare / many:.2f}x")
    print(f"  requirement CaffeLmdb >= 0.5x bare: {'PASS' if bare / ours >= 0.5 else 'FAIL'}")


def csv_module_load(path: str) -> None:
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        rows = [row for row in reader]
    np.asarray([row[1:-1] for row in rows], dtype=np.float32)


def bench_csv(tmp: str, rows: int, rounds: int) -> None:
    path = f"{tmp}/otto_train.csv"
    make_otto_csv(path, np.random.default_rng(1), rows=rows)
    load_numeric = lambda: np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(1, 94),  # noqa: E731
                                      dtype=np.float32, comments=None)
    ours, loadtxt = [], []
    for _ in range(rounds):  # interleaved so that machine noise hits both alike
        ours.append(best_of(1, lambda: CsvTable(path)))
        loadtxt.append(best_of(1, load_numeric))
    ours, loadtxt = min(ours), min(loadtxt)
    slow = best_of(1, lambda: csv_module_load(path))
    print(f"CsvTable load, Otto-shaped {rows} x 93 (+id, target), best of {rounds}:")
    print(f"  CsvTable (features, labels, ids)    : {ours:.3f} s   {rows / ours:,.0f} rows/s")
    print(f"  np.loadtxt of the 93 numeric columns: {loadtxt:.3f} s   ratio CsvTable vs loadtxt {loadtxt / ours:.2f}x")
    print(f"  csv module + np.asarray             : {slow:.3f} s   ratio CsvTable vs csv module {slow / ours:.2f}x")
    print(f"  requirement well under 1 s: {'PASS' if ours < 0.7 else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--rows", type=int, default=61878)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="feedstock-bench-") as tmp:
        bench_lmdb(tmp, args.records, args.rounds)
        bench_csv(tmp, args.rows, args.rounds)


if __name__ == "__main__":
    main()
