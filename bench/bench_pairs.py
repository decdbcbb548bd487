"""Segmentation pairs: the pairs stream's Loader against a plain in-process loop, same run, same chain.

Data: the synthetic shapes set (``feedstock.fixtures.segdata``; ``--n`` pairs of 96x128 JPEG
+ palette PNG, generated into a temporary folder). Chain: TRAIN, scales 0.6/1/1.4,
crop 64, mirror, mean_value (the README's segmentation settings), batch 16.

Baseline: what one writes without feedstock: per sample ``cv2.imread`` + Pillow for
the mask, the same transform chain, ``np.stack`` per batch, in this process.
Printed: samples/s of the baseline and of the Loader with 0 and 2 workers in steady state
(started and warmed by one epoch; best of ``--repeats`` interleaved rounds of
``--epochs`` epochs), and the ratios to the baseline.

Usage: python bench/bench_pairs.py [--n 512] [--epochs 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from typing import Callable, Dict

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))

from bench_loader import best  # noqa: E402

from feedstock.fixtures.segdata import make_shapes  # noqa: E402
from feedstock.rng import sample_rng  # noqa: E402
from feedstock.stream import Stream  # noqa: E402

BATCH = 16


def baseline(stream: Stream, epochs: int) -> int:
    """The plain loop: decode, transform and stack in this process; returns samples produced."""
    source = stream.build_source()
    chain = stream.build_transforms("train")
    n = 0
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(source))
        for start in range(0, len(order), BATCH):
            rows = []
            for i in order[start : start + BATCH].tolist():
                image_path, mask_path = source.paths(i)
                sample = {"data": cv2.imread(image_path).transpose(2, 0, 1),
                          "mask": np.asarray(Image.open(mask_path))[None]}
                rng = sample_rng(0, epoch, i)
                for t in chain:
                    sample = t(sample, rng)
                rows.append(sample)
            batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
            n += len(batch["data"])
    return n


def loader_run(loader, epochs: int) -> int:
    """``epochs`` passes over an open Loader (started and warmed before timing: steady state)."""
    n = 0
    for _ in range(epochs):
        for batch in loader:
            n += len(batch["data"])
    return n


def rate_of(run: Callable[[], int]) -> float:
    """Samples/s of one ``run()`` (it returns the samples it produced)."""
    t0 = time.perf_counter()
    n = run()
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images, masks = make_shapes(tmp, n=args.n, seed=0)
        stream = Stream(source=str(images), masks=str(masks), source_type="pairs", scales=(0.6, 1.0, 1.4),
                        crop_size=64, mirror=True, mean_value=(104.0, 117.0, 123.0), batch_size=BATCH,
                        shuffle=True, seed=0)
        loaders = {w: stream.build_loader("train", workers=w) for w in (0, 2)}
        try:
            for loader in loaders.values():
                loader_run(loader, 1)  # start the workers, fault the slots in
            cases: Dict[str, Callable[[], int]] = {
                "baseline (plain loop)": lambda: baseline(stream, args.epochs),
                "Loader workers=0": lambda: loader_run(loaders[0], args.epochs),
                "Loader workers=2": lambda: loader_run(loaders[2], args.epochs),
            }
            # interleaved rounds: drift hits every case alike
            rates = dict(zip(cases, best(args.repeats, *(functools.partial(rate_of, run) for run in cases.values()))))
        finally:
            for loader in loaders.values():
                loader.close()
    base = rates["baseline (plain loop)"]
    for name, rate in rates.items():
        print(f"{name:<24} {rate:9.0f} samples/s   x{rate / base:.2f} of the baseline")


if __name__ == "__main__":
    main()
