"""The ray engine against the local Loader, same run, same machine (goals: JPEG >= 0.8x, raw LMDB >= 0.5x).

* JPEG with the Caffe recipe (random 227 crop, mirror, mean values) from an image folder
  of 256x256 JPEGs: RayLoader on a local Ray instance with 2 CPUs vs Loader(workers=2).
* Raw LMDB Datums (3x64x64 uint8, no transforms: the batch fast path): the same pair. Here
  Ray's costs (a call per group of batches, one copy into the object store) meet batches
  that cost almost nothing to make.
* Ray's per-call cost: a no-op actor method and a no-op task, called one after another
  and 100 at a time; and the raw LMDB batches made by stateless tasks (each opens the
  source) instead of actors holding it open, the choice the engine made.

Both loaders stay open; rounds alternate (local, ray, local, ray, ...) and the medians
are compared, so the machine's noise hits both. Prints samples/s and ratios.

    .venv/bin/python bench/bench_ray.py [--rounds 3] [--seconds 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any, Callable

import numpy as np

from feedstock.engines import RayLoader
from feedstock.engines.ray_bench import compare_rates
from feedstock.engines.ray_maker import BatchMaker
from feedstock.fixtures.synthetic import make_image_folder, make_raw_lmdb
from feedstock.loaders import CaffeLmdb, ImageFolder
from feedstock.phase import TRAIN
from feedstock.pipeline.fill import batch_spec
from feedstock.pipeline.loader import Loader
from feedstock.pipeline.sampler import Sampler
from feedstock.pipeline.shm import SlotLayout
from feedstock.transforms import CaffeTransform
from feedstock.transforms.base import as_compose


def compare(name: str, make: Callable[[str], Any], rounds: int, seconds: float) -> float:
    lo, ra, stats = compare_rates(make, rounds=rounds, seconds=seconds, warmup_batches=24)
    print(f"{name}: local Loader(workers=2) {lo:8.0f} samples/s | ray engine (2 CPUs) {ra:8.0f} samples/s | "
          f"ratio {ra / lo:.2f}x (batches per Ray call: {stats['group']})")
    return ra / lo


def per_call_overhead(calls: int = 300) -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        @ray.remote(num_cpus=0.5)
        class Noop:
            def call(self) -> None:
                return None

        @ray.remote(num_cpus=0.5)
        def noop() -> None:
            return None

        actor = Noop.remote()
        ray.get([actor.call.remote() for _ in range(10)] + [noop.remote() for _ in range(10)])  # warm
        for name, fn in (("actor method", actor.call.remote), ("task", noop.remote)):
            t0 = time.perf_counter()
            for _ in range(calls):
                ray.get(fn())
            one = (time.perf_counter() - t0) / calls
            t0 = time.perf_counter()
            for _ in range(calls // 100):
                ray.get([fn() for _ in range(100)])
            many = (time.perf_counter() - t0) / (calls // 100 * 100)
            print(f"Ray per-call cost, no-op {name}: {one * 1e3:.2f} ms one at a time, "
                  f"{many * 1e3:.2f} ms each 100 in flight")
    finally:
        ray.shutdown()


def actors_vs_tasks(source: CaffeLmdb, batches: int = 200) -> None:
    """Raw LMDB batches by a stateless task per batch (the source reopened each time) vs one actor."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        compose = as_compose(None)
        sampler = Sampler(len(source), batch_size=64, seed=0)
        layout = SlotLayout.of(batch_spec(source, compose, 0), 64)
        args = (ray.put(source), ray.put(compose), sampler, layout, False)

        @ray.remote(num_cpus=1)
        def make(*args: Any) -> Any:
            return BatchMaker(*args[:5]).make(0, args[5])

        chunks = [[(0, k % sampler.num_batches, 64)] for k in range(batches)]
        ray.get([make.remote(*args, c) for c in chunks[:4]])  # workers started, not measured
        t0 = time.perf_counter()
        ray.get([make.remote(*args, c) for c in chunks])
        tasks = batches * 64 / (time.perf_counter() - t0)
        # the actors take both CPUs: made after the tasks are done, or the tasks could not run
        actors = [ray.remote(num_cpus=1)(BatchMaker).remote(*args) for _ in range(2)]
        ray.get([a.check.remote() for a in actors])
        t0 = time.perf_counter()
        ray.get([actors[i % 2].make.remote(0, c) for i, c in enumerate(chunks)])
        held = batches * 64 / (time.perf_counter() - t0)
        print(f"raw LMDB, one batch per call: tasks (source reopened each call) {tasks:8.0f} samples/s | actors "
              f"(source held open) {held:8.0f} samples/s | actors/tasks {held / tasks:.2f}x")
    finally:
        ray.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        make_image_folder(f"{tmp}/jpegs", rng, classes=("a", "b"), per_class=96, size=(256, 256), ext=".jpg")
        make_raw_lmdb(f"{tmp}/raw", rng, 4096, shape=(3, 64, 64))
        images, raw = ImageFolder(f"{tmp}/jpegs"), CaffeLmdb(f"{tmp}/raw")
        recipe = [CaffeTransform(phase=TRAIN, crop_size=227, mirror=True, mean_value=(104.0, 117.0, 123.0))]

        def jpeg(engine: str) -> Any:
            kind = RayLoader if engine == "ray" else Loader
            return kind(images, recipe, batch_size=32, workers=2, seed=0)

        def lmdb(engine: str) -> Any:
            kind = RayLoader if engine == "ray" else Loader
            return kind(raw, None, batch_size=64, workers=2, seed=0, prefetch=8)

        jpeg_ratio = compare("JPEG + Caffe recipe, batch 32", jpeg, args.rounds, args.seconds)
        lmdb_ratio = compare("raw LMDB 3x64x64, batch 64   ", lmdb, args.rounds, args.seconds)
        per_call_overhead()
        actors_vs_tasks(raw)
    print(f"ratios: JPEG {jpeg_ratio:.2f}x (goal >= 0.8), raw LMDB {lmdb_ratio:.2f}x (goal >= 0.5)")


if __name__ == "__main__":
    main()
