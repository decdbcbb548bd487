"""Test-local sources and transforms for the pipeline tests (independent of the real loaders/transforms)."""
from __future__ import annotations

import os
import time
from typing import Dict, Iterable, List

import numpy as np

from feedstock.errors import RecordError
from feedstock.loaders.array import ArraySource
from feedstock.loaders.base import Source
from feedstock.pipeline.sampler import Sampler
from feedstock.pipeline.shm import pid_alive
from feedstock.rng import sample_rng
from feedstock.spec import ArraySpec
from feedstock.transforms.base import Transform

Batch = Dict[str, np.ndarray]


def make_source(n: int = 40, shape=(2, 3)) -> ArraySource:
    """Record i: data = i * 1000 + arange(prod(shape)) (int32), label = i."""
    size = int(np.prod(shape))
    data = (np.arange(n, dtype=np.int32)[:, None] * 1000 + np.arange(size, dtype=np.int32)).reshape(n, *shape)
    return ArraySource(data=data, label=np.arange(n, dtype=np.int64))


def reference_batches(source, seed: int, epoch: int, batch_size: int, **sampler_kw) -> List[Batch]:
    """Batches computed independently of the Loader: sampler order, Jitter applied by hand with sample_rng."""
    sampler = Sampler(len(source), batch_size=batch_size, seed=seed, **sampler_kw)
    out = []
    for k in range(sampler.num_batches):
        rows = [Jitter()(source[int(i)], sample_rng(seed, epoch, int(i))) for i in sampler.batch(epoch, k)]
        out.append({"data": np.stack([r["data"] for r in rows]), "label": np.stack([r["label"] for r in rows])})
    return out


def collect(loader) -> List[Batch]:
    return [{k: v.copy() for k, v in batch.items()} for batch in loader]


def assert_same(a: List[Batch], b: List[Batch]) -> None:
    assert len(a) == len(b), (len(a), len(b))
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, (i, k)
            assert np.array_equal(x[k], y[k]), f"batch {i} field {k} differs"


def alive(pid: int) -> bool:
    """True for a running process (a zombie counts as dead): the sweep's own rule."""
    return pid_alive(pid)


def wait_dead(pids: Iterable[int], seconds: float = 30.0) -> List[int]:
    """The pids still alive after waiting up to ``seconds``."""
    deadline = time.monotonic() + seconds
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


class Jitter(Transform):
    """Random: adds rng.integers(0, 1000) and flips the last axis with probability 1/2; float32 out."""

    def __call__(self, sample, rng):
        data = sample["data"].astype(np.float32) + np.float32(rng.integers(0, 1000))
        if rng.random() < 0.5:
            data = data[..., ::-1]
        return {"data": data, "label": sample["label"]}

    def output_spec(self, spec):
        return {"data": spec["data"].with_dtype(np.float32), "label": spec["label"]}


class Times2(Transform):
    """Deterministic and row-wise, so it offers the batch fast path."""

    def __call__(self, sample, rng):
        return {**sample, "data": sample["data"] * 2}

    def apply_batch(self, fields):
        return {**fields, "data": fields["data"] * 2}

    def output_spec(self, spec):
        return spec


class FailOn(Transform):
    """Raises ValueError for the given labels."""

    def __init__(self, labels):
        self.labels = frozenset(int(x) for x in labels)

    def __call__(self, sample, rng):
        if int(sample["label"]) in self.labels:
            raise ValueError(f"label {int(sample['label'])} is cursed")
        return sample

    def output_spec(self, spec):
        return spec


class SleepOn(Transform):
    """Sleeps ``seconds`` per sample (for the given labels, or all); ``seconds=None`` never returns."""

    def __init__(self, seconds, labels=None):
        self.seconds, self.labels = seconds, None if labels is None else frozenset(labels)

    def __call__(self, sample, rng):
        if self.labels is None or int(sample["label"]) in self.labels:
            time.sleep(3600 if self.seconds is None else self.seconds)
        return sample

    def output_spec(self, spec):
        return spec


class KillSelfOnce(Transform):
    """SIGKILLs its own worker at label ``label`` the first time (a marker file remembers)."""

    def __init__(self, label: int, marker: str):
        self.label, self.marker = label, marker

    def __call__(self, sample, rng):
        if int(sample["label"]) == self.label and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), 9)
        return sample

    def output_spec(self, spec):
        return spec


class Huge(Transform):
    """Declares an output far beyond any /dev/shm."""

    def __call__(self, sample, rng):
        raise AssertionError("never run")

    def output_spec(self, spec):
        return {"data": ArraySpec((1 << 20, 1 << 20), np.float32)}


class CorruptSource(Source):
    """``n`` records like make_source; the ``bad`` ones raise RecordError when read (no read_batch)."""

    def __init__(self, n: int, bad: Iterable[int]):
        self.inner = make_source(n)
        self.bad = frozenset(bad)

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        if i in self.bad:
            raise RecordError(self.key(i), "corrupt record")
        return self.inner[i]

    def key(self, i):
        return f"rec-{i:04d}"

    def spec(self):
        return self.inner.spec()


class SizedSource(Source):
    """Images (1, h, w) uint8 whose size is known only per record: ``sizes[i] = (h, w)``."""

    def __init__(self, sizes):
        self.sizes = [tuple(s) for s in sizes]

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        h, w = self.sizes[i]
        return {"data": np.full((1, h, w), i, np.uint8), "label": np.asarray(i, np.int64)}

    def key(self, i):
        return f"img-{i}.png"

    def spec(self):
        return {"data": ArraySpec((1, None, None), np.uint8), "label": ArraySpec((), np.int64)}


class CropTo(Transform):
    """Top-left crop to ``size``; output spec fixed from ``size`` (or unknown when size is None)."""

    def __init__(self, size=None):
        self.size = size

    def __call__(self, sample, rng):
        if self.size is None:
            return sample
        h, w = self.size
        return {**sample, "data": sample["data"][:, :h, :w]}

    def output_spec(self, spec):
        if self.size is None:
            return spec
        return {**spec, "data": spec["data"].with_shape((spec["data"].shape[0], *self.size))}


class ReportThreads(Transform):
    """Adds ``threads`` = [OpenCV threads, OMP_NUM_THREADS] as seen where the transform runs."""

    def __call__(self, sample, rng):
        import cv2

        omp = int(os.environ.get("OMP_NUM_THREADS", "0"))
        return {**sample, "threads": np.asarray([cv2.getNumThreads(), omp], np.int64)}

    def output_spec(self, spec):
        return {**spec, "threads": ArraySpec((2,), np.int64)}
