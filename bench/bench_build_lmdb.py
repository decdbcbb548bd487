"""build-lmdb throughput: images/s for a 2,000-image JPEG folder with 1 and 2 worker processes.

The folder is made from the real 500x375 photos in shared/data/photos (each copy
shifted, flipped and re-exposed a little, then saved as JPEG quality 90), or from
synthetic photos of that size when the folder is absent. Each build resizes to
256x256 and stores JPEG-encoded Datums (``--resize 256x256 --encode-type jpg``),
so the work per image is decode + resize + encode, as in a typical ImageNet
conversion. Both builds run in this process one after the other and the ratio
of their rates is printed (machines are noisy: compare within one run only).

    python bench/bench_build_lmdb.py [--images 2000] [--workers 1 2] [--start-method auto]
"""
from __future__ import annotations

import argparse
import glob
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feedstock.writers.build.builder import BuildOptions, build_lmdb  # noqa: E402

PHOTOS = Path(os.environ.get("FEEDSTOCK_SHARED_DATA", ROOT.parent / "shared" / "data")) / "photos"


def base_photos(rng: np.random.Generator) -> List[np.ndarray]:
    """The real 500x375 photos, or synthetic ones (smooth colour fields plus texture) when absent."""
    photos = [cv2.imread(p) for p in sorted(glob.glob(str(PHOTOS / "*_500x375_q90.jpg")))]
    photos = [p for p in photos if p is not None]
    if photos:
        return photos
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    out = []
    for _ in range(6):
        a, b, c = rng.uniform(0.005, 0.05, 3)
        field = np.stack([np.sin(a * xx + b * yy), np.cos(b * xx - c * yy), np.sin(c * xx * yy / 500)], -1)
        noise = rng.normal(0, 12, field.shape)
        out.append(np.clip(128 + 90 * field + noise, 0, 255).astype(np.uint8))
    return out


def make_folder(root: Path, n: int, rng: np.random.Generator) -> Dict[str, int]:
    """``n`` JPEG variations of the base photos in one class folder per base photo."""
    photos = base_photos(rng)
    sizes: Dict[str, int] = {}
    for i in range(n):
        k = i % len(photos)
        img = np.roll(photos[k], (int(rng.integers(-20, 21)), int(rng.integers(-20, 21))), axis=(0, 1))
        img = img[:, ::-1] if rng.random() < 0.5 else img
        img = cv2.convertScaleAbs(img, alpha=float(rng.uniform(0.9, 1.1)), beta=float(rng.uniform(-12, 12)))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        folder = root / f"class{k}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:05d}.jpg").write_bytes(buf.tobytes())
        sizes[str(k)] = sizes.get(str(k), 0) + 1
    return sizes


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def spin(n: int) -> int:
    """Pure-Python CPU work: the machine's own scaling ceiling, free of I/O and libraries."""
    total = 0
    for i in range(n):
        total += i
    return total


def machine_ceiling(workers: int, n: int = 8_000_000) -> float:
    """How much faster ``workers`` processes run 2*workers CPU tasks than one process does."""
    from feedstock.pipeline.ordered import ordered_map

    def timed(w: int) -> float:
        started = time.perf_counter()
        list(ordered_map(spin, [n] * (2 * workers), workers=w))
        return time.perf_counter() - started

    return timed(1) / timed(workers)


def run_build(src: Path, out: Path, workers: int, start_method: str) -> Dict[str, float]:
    """End-to-end images/s, and images/s after the first chunk came back (pool start-up excluded)."""
    options = BuildOptions(resize_height=256, resize_width=256, encoding="jpg", workers=workers,
                           start_method=start_method)
    first: List[float] = []

    def progress(n: int) -> None:
        if not first:
            first.extend([time.perf_counter(), n])

    cpu0 = cpu_seconds()
    started = time.perf_counter()
    report = build_lmdb(str(src), str(out), options, force=True, progress=progress)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu0
    records = sum(s["records"] for s in report.splits)
    steady = (records - first[1]) / (started + elapsed - first[0])
    print(f"workers={workers}: {records} images in {elapsed:.2f} s = {records / elapsed:.1f} images/s "
          f"end to end; {steady:.1f} images/s after the first chunk ({first[0] - started:.2f} s start-up); "
          f"{1000 * cpu / records:.2f} CPU ms/image (all processes)")
    return {"total": records / elapsed, "steady": steady}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--start-method", default="auto", help="worker start method (auto/fork/spawn)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_build_lmdb_"))
    try:
        t = time.perf_counter()
        make_folder(tmp / "imgs", args.images, np.random.default_rng(0))
        print(f"made {args.images} JPEGs ({'real photos' if PHOTOS.is_dir() else 'synthetic'}) "
              f"in {time.perf_counter() - t:.1f} s; build: --resize 256x256 --encode-type jpg")
        rates = {w: run_build(tmp / "imgs", tmp / f"db{w}", w, args.start_method) for w in args.workers}
        ceiling = {w: machine_ceiling(w) for w in args.workers[1:] if w > 1}
        base = rates[args.workers[0]]
        for w in args.workers[1:]:
            print(f"ratio workers={w} / workers={args.workers[0]}: {rates[w]['total'] / base['total']:.2f}x end to "
                  f"end, {rates[w]['steady'] / base['steady']:.2f}x after start-up "
                  f"(CPUs available: {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f})")
            if w in ceiling:
                print(f"machine ceiling now: {w} busy-loop processes do {ceiling[w]:.2f}x the work of 1 "
                      "(below ~1.9x the CPUs are shared with other work and no ratio can reach 1.7x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
