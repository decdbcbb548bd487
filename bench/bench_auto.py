"""workers="auto" and ``feedstock bench``'s recommendation against the best measured worker count, same run.

Three pipelines, each measured with the Loader at every worker count from 0
(in-process) to the usable cores (best of ``--repeats`` interleaved rounds of
``--seconds`` of steady state):

1. the bundled Fashion-MNIST sample (4000 x 1x28x28 uint8, in memory, as the trainer feeds it), batch 64;
2. an Otto-shaped CSV (id, feat_1..feat_93, target Class_1..Class_9; ``--otto`` rows), batch 256;
3. the encoded-JPEG LMDB of bench_loader.py (500x375 photos -> resize 256, random 227 crop,
   mirror, mean), batch 64.

Printed per pipeline: samples/s per count, the count ``workers="auto"`` chose in
each round (and its probe time), the count ``feedstock bench`` recommends, and
the ratios rate(choice) / rate(best count) (target >= 0.9) and
rate(auto) / rate(the default, 2 workers).

Usage: python bench/bench_auto.py [--seconds 1.0] [--repeats 2] [--otto 61878] [--jpeg 300]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from bench_loader import make_jpeg_lmdb  # noqa: E402

from feedstock.benchtool.sweep import measure_loader  # noqa: E402
from feedstock.benchtool.verdict import recommend  # noqa: E402
from feedstock.loaders import ArraySource  # noqa: E402
from feedstock.pipeline.loader import Loader  # noqa: E402
from feedstock.pipeline.machine import usable_cores  # noqa: E402
from feedstock.stream import Stream  # noqa: E402
from feedstock.testing import make_otto_csv  # noqa: E402
from feedstock.trainer.datasets import load_fashion_mnist  # noqa: E402

DEFAULT_WORKERS = 2  # the Stream's default

MakeLoader = Callable[[Any], Loader]


def fashion_case() -> MakeLoader:
    train, _ = load_fashion_mnist()
    source = ArraySource(data=train.images, label=train.labels)
    return lambda n: Loader(source, None, batch_size=64, workers=n, seed=0, shuffle=True, drop_last=False)


def stream_case(stream: Stream) -> MakeLoader:
    source = stream.build_source(caffe_layout=True)
    return lambda n: stream.build_loader("train", workers=n, source=source)


def case(name: str, make: MakeLoader, args: argparse.Namespace) -> Dict[str, float]:
    counts = list(range(0, usable_cores() + 1))
    rates: Dict[int, List[float]] = {n: [] for n in counts}
    choices: List[tuple] = []
    for _ in range(args.repeats):  # interleaved: machine noise hits every count alike
        for n in counts:
            rates[n].append(measure_loader(make, n, seconds=args.seconds).rate)
        start = time.perf_counter()
        with make("auto") as loader:
            choices.append((loader.workers, time.perf_counter() - start, loader.auto.reason))
    best = {n: max(r) for n, r in rates.items()}
    top = max(best.values())
    best_n = max(best, key=lambda n: best[n])
    recommended, _ = recommend(best)
    auto_ratios = [best[c] / top for c, _, _ in choices]
    print(f"[{name}] samples/s by workers: " + ", ".join(f"{n}: {r:,.0f}" for n, r in best.items())
          + f"  (best: {best_n})")
    for (c, probe_s, reason), ratio in zip(choices, auto_ratios):
        print(f"    auto chose {c} in {probe_s:.2f} s -> {ratio:.2f} of the best; "
              f"vs default {DEFAULT_WORKERS}: {best[c] / best[min(DEFAULT_WORKERS, max(counts))]:.2f}x")
        print(f"      why: {reason}")
    print(f"    bench recommends {recommended} -> {best[recommended] / top:.2f} of the best (target >= 0.90)")
    return {"auto_min": min(auto_ratios), "recommended": best[recommended] / top}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="steady-state seconds per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the best rate counts")
    parser.add_argument("--otto", type=int, default=61878, help="rows of the Otto-shaped CSV")
    parser.add_argument("--jpeg", type=int, default=300, help="records of the JPEG LMDB")
    args = parser.parse_args()
    print(f"{usable_cores()} usable cores; machine load average {os.getloadavg()[0]:.1f}")
    out = {}
    with tempfile.TemporaryDirectory(prefix="feedstock-bench-auto-") as tmp:
        otto, jpeg = os.path.join(tmp, "otto.csv"), os.path.join(tmp, "jpeg")
        make_otto_csv(otto, np.random.default_rng(0), args.otto)
        make_jpeg_lmdb(jpeg, args.jpeg)
        out["fashion"] = case("Fashion-MNIST sample, batch 64", fashion_case(), args)
        out["otto"] = case(f"Otto CSV {args.otto} rows, batch 256",
                           stream_case(Stream(source=otto, batch_size=256, shuffle=True, seed=0)), args)
        out["jpeg"] = case(f"JPEG LMDB {args.jpeg} x 500x375 -> 3x227x227, batch 64", stream_case(Stream(
            source=jpeg, batch_size=64, shuffle=True, seed=0, new_height=256, new_width=256, crop_size=227,
            mirror=True, mean_value=(104.0, 117.0, 123.0))), args)
    print("summary: rate(choice) / rate(best count): " + "; ".join(
        f"{k}: auto {v['auto_min']:.2f} (worst round), bench {v['recommended']:.2f}" for k, v in out.items()))


if __name__ == "__main__":
    main()
