"""build-lmdb --engine ray vs the local engine: images/s on bench_build_lmdb's 2,000-JPEG workload, 2 CPUs each.

The folder comes from :func:`bench_build_lmdb.make_folder` (real 500x375 photos
varied, JPEG quality 90; synthetic when shared/data is absent) and both builds
do ``--resize 256x256 --encode-type jpg``: the local engine with 2 worker
processes, then the ray engine on a local Ray instance of 2 CPUs (its default
partitions), twice. Ray's start-up (``ray.init``) is timed and printed
separately; a ray build's time includes Ray Data's planning, the partitions'
listing and the merge, and for the first build the one-time start of Ray
Data's actors and the workers' imports. Both outputs are checked to be
identical. Compare within one run only.

    python bench/bench_build_ray.py [--images 2000] [--partitions P]
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_build_lmdb import PHOTOS, make_folder  # noqa: E402  (also puts the repo root on sys.path)

from feedstock.writers.build.builder import BuildOptions, BuildReport, build_lmdb  # noqa: E402
from feedstock.writers.build.on_ray import build_lmdb_ray, import_ray  # noqa: E402

OPTIONS = BuildOptions(resize_height=256, resize_width=256, encoding="jpg", workers=2)


def timed_build(label: str, build, src: Path, out: Path, **kwargs) -> tuple[float, BuildReport]:
    started = time.perf_counter()
    report = build(str(src), str(out), OPTIONS, force=True, **kwargs)
    elapsed = time.perf_counter() - started
    records = sum(s["records"] for s in report.splits)
    print(f"{label}: {records} images in {elapsed:.2f} s = {records / elapsed:.1f} images/s")
    return records / elapsed, report


def ray_run(src: Path, out: Path, partitions: Optional[int]) -> tuple[float, float, float, BuildReport]:
    """(ray.init seconds, images/s of a first and a second ray build, report) on a local 2-CPU instance."""
    ray = import_ray()
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its INFO lines and the "bars disabled" note
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    temp = tempfile.mkdtemp(prefix="fsray", dir="/tmp")  # short: Ray's socket paths must fit 108 bytes
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, logging_level="WARNING")
    startup = time.perf_counter() - started
    try:
        print(f"ray.init (local instance, 2 CPUs): {startup:.2f} s")
        label = f"ray engine ({partitions or 'default'} partitions)"
        cold, _ = timed_build(f"{label}, first build", build_lmdb_ray, src, out, partitions=partitions)
        warm, report = timed_build(f"{label}, second build (Ray workers warm)", build_lmdb_ray, src, out,
                                   partitions=partitions)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    return startup, cold, warm, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=None, help="ray partitions (default: the engine's)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_build_ray_"))
    try:
        make_folder(tmp / "imgs", args.images, np.random.default_rng(0))
        print(f"made {args.images} JPEGs ({'real photos' if PHOTOS.is_dir() else 'synthetic'}); "
              f"build: --resize 256x256 --encode-type jpg; CPUs here: {len(os.sched_getaffinity(0))}, "
              f"load average {os.getloadavg()[0]:.1f}")
        local_rate, local = timed_build("local engine (2 workers)", build_lmdb, tmp / "imgs", tmp / "local")
        startup, cold, warm, remote = ray_run(tmp / "imgs", tmp / "ray", args.partitions)
        records = sum(s["records"] for s in remote.splits)
        with_startup = records / (records / cold + startup)
        same = [s["sha256"] for s in remote.splits] == [s["sha256"] for s in local.splits]
        print(f"ratio ray / local: first build {cold / local_rate:.2f}x ({with_startup / local_rate:.2f}x counting "
              f"ray.init), second build {warm / local_rate:.2f}x; outputs identical: {same}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
