"""``workers="auto"`` against ``feedstock bench``'s recommendation, over many runs of the real command.

Three streams, each benched ``--runs`` times by the ``feedstock bench --json`` command itself:

1. the bundled Fashion-MNIST sample, as ``feedstock demo`` converts it (raw 1x28x28 Datum LMDB), batch 64;
2. an Otto-shaped CSV (id, feat_1..feat_93, target; ``--otto`` rows), batch 256;
3. an encoded-JPEG LMDB (``--jpeg`` synthetic 500x375 photos -> resize 256, random 227 crop, mirror, mean),
   batch 64.

Per run it checks that auto's choice (the rule of :mod:`feedstock.pipeline.auto` on the run's windows)
equals the recommendation, and that the recommendation's median lies inside the best count's measured
range; it prints how often each count was recommended, and the medians/ranges of the last run. A final
part times ``Loader(workers="auto")`` itself (its own shorter windows) ``--auto-runs`` times per stream.

Usage: python bench/bench_auto.py [--runs 20] [--seconds 0.2] [--otto 20000] [--jpeg 120]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from feedstock.fixtures.synthetic import make_otto_csv
from feedstock.pipeline.machine import usable_cores
from feedstock.stream import Stream

PHOTOS = """
import os, sys, cv2, numpy as np
rng, tmp = np.random.default_rng(0), sys.argv[1]
for i in range(int(sys.argv[2])):  # smooth noise: JPEGs of photo-like size and decode cost
    folder = os.path.join(tmp, "photos", f"c{i % 2}")
    os.makedirs(folder, exist_ok=True)
    img = cv2.resize(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), (500, 375), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(os.path.join(folder, f"{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
"""


def make_data(tmp: str, otto_rows: int, jpegs: int) -> Dict[str, List[str]]:
    from feedstock.cli.demo import write_lmdb
    from feedstock.trainer.datasets import load_fashion_mnist

    train, _ = load_fashion_mnist()
    write_lmdb(Path(tmp, "fashion_lmdb"), train.images, train.labels, "fashion_lmdb")
    make_otto_csv(os.path.join(tmp, "otto.csv"), np.random.default_rng(0), otto_rows)
    # OpenCV's calls run in fresh processes: forking a process whose OpenCV thread pool has run can hang
    # (seen here: a build worker and a Loader worker stuck at start)
    subprocess.run([sys.executable, "-c", PHOTOS, tmp, str(jpegs)], check=True)
    subprocess.run([sys.executable, "-m", "feedstock.cli.main", "build-lmdb", os.path.join(tmp, "photos"),
                    os.path.join(tmp, "jpeg_lmdb"), "--encoded", "-q"], check=True, capture_output=True)
    return {"fashion sample LMDB, batch 64": [os.path.join(tmp, "fashion_lmdb"), "--batch-size", "64"],
            f"Otto CSV {otto_rows} rows, batch 256": [os.path.join(tmp, "otto.csv"), "--batch-size", "256"],
            f"JPEG LMDB {jpegs} x 500x375 -> 227, batch 64": [
                os.path.join(tmp, "jpeg_lmdb"), "--batch-size", "64", "--new-height", "256", "--new-width", "256",
                "--crop-size", "227", "--mirror", "--mean-value", "104,117,123"]}


def bench_once(argv: List[str], seconds: float) -> dict:
    cmd = [sys.executable, "-m", "feedstock.cli.main", "bench", *argv, "--seconds", str(seconds), "--json", "-q"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def case(name: str, argv: List[str], args: argparse.Namespace) -> bool:
    picks: collections.Counter = collections.Counter()
    agree = inside = 0
    t0 = time.perf_counter()
    doc: dict = {}
    for _ in range(args.runs):
        doc = bench_once(argv, args.seconds)
        rec, auto, best = doc["verdict"]["workers"], doc["auto"]["workers_auto"], doc["auto"]["workers_auto_best"]
        rows = {r["workers"]: r for r in doc["loader"]}
        agree += rec == auto
        inside += rows[best]["samples_per_s_low"] <= rows[rec]["samples_per_s"] <= rows[best]["samples_per_s_high"]
        picks[rec] += 1
    spreads = "; ".join(f"{r['workers']}: {r['samples_per_s']:,.0f} ({r['samples_per_s_low']:,.0f}-"
                        f"{r['samples_per_s_high']:,.0f})" for r in doc["loader"])
    print(f"[{name}] {args.runs} runs in {time.perf_counter() - t0:.0f} s")
    print(f"    auto == recommendation: {agree}/{args.runs}; recommendation's median inside the best's range: "
          f"{inside}/{args.runs}; recommended counts: {dict(sorted(picks.items()))}")
    print(f"    last run, samples/s median (range) by workers: {spreads}")
    return agree == inside == args.runs


def loader_auto(name: str, argv: List[str], runs: int) -> None:
    """Loader(workers="auto") on its own: the counts it picks and the probe's time."""
    opts = dict(zip(argv[1::2], argv[2::2]))
    stream = Stream(source=argv[0], batch_size=int(opts["--batch-size"]), shuffle=True, seed=0,
                    new_height=int(opts.get("--new-height", 0)), new_width=int(opts.get("--new-width", 0)),
                    crop_size=int(opts.get("--crop-size", 0)), mirror="--mirror" in argv,
                    mean_value=tuple(float(v) for v in opts["--mean-value"].split(",")) if "--mean-value" in opts else ())
    source = stream.build_source(caffe_layout=True)
    picks: collections.Counter = collections.Counter()
    took = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with stream.build_loader("train", workers="auto", source=source) as loader:
            picks[loader.workers] += 1
        took.append(time.perf_counter() - t0)
    print(f"[{name}] Loader(workers='auto') x{runs}: picked {dict(sorted(picks.items()))}, "
          f"probe {np.median(took):.2f} s median")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="feedstock bench runs per stream (0: none)")
    parser.add_argument("--seconds", type=float, default=0.2, help="bench --seconds")
    parser.add_argument("--otto", type=int, default=20000, help="rows of the Otto-shaped CSV")
    parser.add_argument("--jpeg", type=int, default=120, help="records of the JPEG LMDB")
    parser.add_argument("--auto-runs", type=int, default=5, help="Loader(workers='auto') runs per stream")
    args = parser.parse_args()
    print(f"{usable_cores()} usable cores; load average {os.getloadavg()[0]:.1f}; "
          f"feedstock bench --seconds {args.seconds}")
    with tempfile.TemporaryDirectory(prefix="feedstock-bench-auto-") as tmp:
        cases = make_data(tmp, args.otto, args.jpeg)
        ok = all([case(name, argv, args) for name, argv in cases.items()]) if args.runs else True
        for name, argv in cases.items():
            loader_auto(name, argv, args.auto_runs)
    print("PASS: auto agreed with bench and stayed within the best's spread in every run" if ok else "MISS")


if __name__ == "__main__":
    main()
