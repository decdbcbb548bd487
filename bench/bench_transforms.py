"""Per-image cost of feedstock.transforms, with the fused Caffe path against plain numpy in the same run.

    .venv/bin/python bench/bench_transforms.py [--quick]

A 256x256 BGR uint8 image -> 227 crop, mirror, per-channel mean values,
scale, written into a float32 batch row: ``CaffeTransform.into`` against the
straightforward numpy composition (astype float32, slice crop, ``[:, :, ::-1]``
flip, subtract mean, multiply, copy into the row). Both layouts a source hands
out are measured: a contiguous CHW array (raw LMDB Datum) and a CHW view of
HWC memory (an OpenCV-decoded image), each writing into one row (hot in cache:
the compute cost) and into the rows of a 64-row slot in turn (cold: the
memory-bound cost a real batch slot sees). Then the cost of the other transforms.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import timeit
from typing import Callable, Dict, Tuple

import cv2
import numpy as np

from feedstock.transforms import CaffeTransform, Compose, Mirror, Multiscale, Occlude, RandomCrop, Resize

MEAN = (104.0, 117.0, 123.0)
SCALE = 0.017
CROP = 227
SLOT_ROWS = 64  # 40 MB of rows: each write goes to memory, as in a real batch slot


def per_call_us(fn: Callable[[], None], number: int, repeat: int) -> float:
    """Best-of-``repeat`` mean time of one call, in microseconds (the minimum resists noise)."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def paired_us(a: Callable[[], None], b: Callable[[], None], number: int, repeat: int) -> Tuple[float, float]:
    """Best-of-``repeat`` per-call times of ``a`` and ``b``, measured in alternation (shared noise)."""
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(timeit.timeit(a, number=number))
        tb.append(timeit.timeit(b, number=number))
    return min(ta) / number * 1e6, min(tb) / number * 1e6


def numpy_baseline(x: np.ndarray, rng: np.random.Generator, out: np.ndarray) -> None:
    """The obvious numpy version, with Caffe's draws (mirror, then h_off, w_off)."""
    do_mirror = bool(rng.integers(0, 2))
    top = int(rng.integers(0, x.shape[1] - CROP + 1))
    left = int(rng.integers(0, x.shape[2] - CROP + 1))
    f = x.astype(np.float32)
    f = f[:, top : top + CROP, left : left + CROP]
    if do_mirror:
        f = f[:, :, ::-1]
    f = f - np.asarray(MEAN, dtype=np.float32)[:, None, None]
    f = f * np.float32(SCALE)
    out[...] = f


def bench_caffe(layouts: Dict[str, np.ndarray], number: int, repeat: int) -> bool:
    t = CaffeTransform(phase="TRAIN", crop_size=CROP, mirror=True, mean_value=list(MEAN), scale=SCALE)
    slot = np.full((SLOT_ROWS, 3, CROP, CROP), 1.0, dtype=np.float32)  # pre-faulted: no page faults timed
    ok = True
    print(f"CaffeTransform 256x256x3 uint8 -> crop {CROP}, mirror, mean values, scale (us/image)")
    for where, rows in (("one row", [slot[0]]), (f"{SLOT_ROWS}-row slot", list(slot))):
        for name, x in layouts.items():
            for seed in range(4):  # same draws -> identical pixels, or the comparison is void
                t.into({"data": x}, np.random.default_rng(seed), {"data": slot[0]})
                ref = np.empty_like(slot[0])
                numpy_baseline(x, np.random.default_rng(seed), ref)
                ok &= bool(np.array_equal(slot[0], ref))
            rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
            cyc_a, cyc_b = itertools.cycle(rows), itertools.cycle(rows)
            fused, base = paired_us(lambda: t.into({"data": x}, rng_a, {"data": next(cyc_a)}),  # noqa: B023
                                    lambda: numpy_baseline(x, rng_b, next(cyc_b)), number, repeat)  # noqa: B023
            print(f"  {where:12s} {name:28s} fused {fused:7.1f}   numpy {base:7.1f}   ratio {base / fused:5.2f}x")
    print(f"  fused output == numpy output bit for bit: {ok}")
    return ok


def bench_others(hwc_view: np.ndarray, number: int, repeat: int) -> None:
    sample = {"data": hwc_view, "mask": np.zeros((1, 256, 256), np.uint8)}
    cases = {
        "RandomCrop(227)": (RandomCrop(227), (227, 227)),
        "Mirror()": (Mirror(), (256, 256)),
        "Occlude()": (Occlude(), (256, 256)),
        "Resize(224, 224, squash)": (Resize(224, 224), (224, 224)),
        "Resize(224, 160, crop)": (Resize(224, 160, "crop"), (224, 160)),
        "Resize(224, 160, fill)": (Resize(224, 160, "fill"), (224, 160)),
        "Resize(224, 160, half_crop)": (Resize(224, 160, "half_crop"), (224, 160)),
        "Multiscale(256)": (Multiscale(256), (256, 256)),
    }
    print("Other transforms, image + mask, Compose.into a uint8 row (us/image)")
    for name, (t, (h, w)) in cases.items():
        rows = {"data": np.empty((3, h, w), np.uint8), "mask": np.empty((1, h, w), np.uint8)}
        pipeline, rng = Compose([t]), np.random.default_rng(0)
        us = per_call_us(lambda: pipeline.into(sample, rng, rows), number, repeat)  # noqa: B023
        print(f"  {name:28s} {us:8.1f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = p.parse_args(argv)
    number, repeat = (20, 2) if args.quick else (200, 7)
    cv2.setNumThreads(1)  # as in the workers
    hwc = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    layouts = {
        "CHW contiguous (LMDB datum)": np.ascontiguousarray(hwc.transpose(2, 0, 1)),
        "CHW view of HWC (decoded)": hwc.transpose(2, 0, 1),
    }
    ok = bench_caffe(layouts, number, repeat)
    bench_others(layouts["CHW view of HWC (decoded)"], max(number // 3, 5), repeat)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
