"""DataLayer.forward() time vs a plain numpy copy of the same-size batch into the top blob, same run.

A solver step is simulated with a sleep, as a GPU net would keep the solver busy
while feedstock's workers decode, crop, mirror and mean-subtract the next batches.
forward() should then cost about one memory copy: the printed ratio is
median forward() time / median np.copyto time (target: <= 2).

    .venv/bin/python bench/bench_caffe_layer.py [--steps 40] [--step-seconds 0.25]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import List

import numpy as np

from feedstock.caffe_layer import DataLayer
from feedstock.caffe_pb import write_mean_file
from feedstock.fixtures.synthetic import make_raw_lmdb


class Blob:
    """The two things a Python layer uses of a pycaffe blob: ``.data`` and ``reshape(*dims)``."""

    def __init__(self) -> None:
        self.data = np.zeros((0,), dtype=np.float32)

    def reshape(self, *dims: int) -> None:
        self.data = np.zeros(dims, dtype=np.float32)
        self.data.fill(0.0)  # first-touch the pages, as Caffe's allocation would be warm too


def parse_args(argv: List[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=256, help="stored image side (cropped to 227)")
    ap.add_argument("--crop", type=int, default=227)
    ap.add_argument("--images", type=int, default=600, help="records in the LMDB (not a multiple of --batch)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--step-seconds", type=float, default=0.25, help="simulated solver step")
    ap.add_argument("--workers", type=int, default=2)
    return ap.parse_args(argv)


def make_layer(tmp: str, args: argparse.Namespace) -> DataLayer:
    db = os.path.join(tmp, "train_lmdb")
    images, _ = make_raw_lmdb(db, np.random.default_rng(0), args.images, (3, args.size, args.size))
    mean_file = os.path.join(tmp, "mean.binaryproto")
    write_mean_file(mean_file, images.mean(axis=0, dtype=np.float64).astype(np.float32))
    layer = DataLayer()
    layer.param_str = repr(dict(source=db, batch_size=args.batch, crop_size=args.crop, mirror=True,
                                mean_file=mean_file, workers=args.workers, seed=1, shuffle=True))
    layer.phase = 0  # TRAIN: random crops and flips
    return layer


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_caffe_layer_") as tmp:
        layer = make_layer(tmp, args)
        top = [Blob(), Blob()]
        layer.setup([], top)
        # The baseline copies an equally large, already-made batch into the same top arrays.
        ready = np.random.default_rng(2).standard_normal(top[0].data.shape, dtype=np.float32)
        ready_labels = np.arange(args.batch, dtype=np.float32)
        forward_s, copy_s, new_epoch = [], [], []
        try:
            for step in range(args.steps + 2):
                epoch = layer.state_dict()["loader"]["epoch"]
                t0 = time.perf_counter()
                layer.reshape([], top)
                layer.forward([], top)
                t1 = time.perf_counter()
                np.copyto(top[0].data, ready)
                np.copyto(top[1].data, ready_labels)
                t2 = time.perf_counter()
                if step >= 2:  # the first batches are decoded while the solver would be starting
                    forward_s.append(t1 - t0)
                    copy_s.append(t2 - t1)
                    new_epoch.append(layer.state_dict()["loader"]["epoch"] != epoch)
                time.sleep(args.step_seconds)
        finally:
            layer.close()
    report(forward_s, copy_s, new_epoch, args)


def report(forward_s: List[float], copy_s: List[float], new_epoch: List[bool], args: argparse.Namespace) -> None:
    fwd, cp = statistics.median(forward_s), statistics.median(copy_s)
    waits = sum(f > 3 * cp for f in forward_s)
    within = [f for f, crossed in zip(forward_s, new_epoch) if not crossed]
    crossing = [f for f, crossed in zip(forward_s, new_epoch) if crossed]
    print(f"batch {args.batch}x3x{args.crop}x{args.crop} float32 ({args.batch * 3 * args.crop**2 * 4 / 2**20:.1f} MiB), "
          f"{args.workers} workers, {args.steps} steps, simulated step {args.step_seconds * 1e3:.0f} ms")
    print(f"DataLayer.forward  median {fwd * 1e3:7.2f} ms  mean {statistics.fmean(forward_s) * 1e3:7.2f} ms  "
          f"max {max(forward_s) * 1e3:7.2f} ms")
    print(f"np.copyto baseline median {cp * 1e3:7.2f} ms  mean {statistics.fmean(copy_s) * 1e3:7.2f} ms  "
          f"max {max(copy_s) * 1e3:7.2f} ms")
    print(f"ratio forward/copy (median) {fwd / cp:.2f}  (mean {statistics.fmean(forward_s) / statistics.fmean(copy_s):.2f}); "
          f"forwards slower than 3x a copy (waited for data): {waits}/{len(forward_s)}")
    if within:
        print(f"within an epoch: {len(within)} forwards, median {statistics.median(within) * 1e3:.2f} ms, "
              f"ratio {statistics.median(within) / cp:.2f}")
    if crossing:
        print(f"starting a new epoch: {len(crossing)} forwards, median {statistics.median(crossing) * 1e3:.2f} ms, "
              f"ratio {statistics.median(crossing) / cp:.2f}")


if __name__ == "__main__":
    run(parse_args(sys.argv[1:]))
