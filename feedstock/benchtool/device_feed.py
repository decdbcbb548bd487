"""``--device``: pinned host-to-device bandwidth of the Loader's slots and the DeviceFeeder's overlap.

Needs a usable CUDA device through cupy (:func:`feedstock.backend.probe_cupy`);
otherwise :func:`measure_device` says so in one line and measures nothing.
"""
from __future__ import annotations

import time
from types import ModuleType
from typing import List, Optional

import numpy as np

from .sweep import MakeLoader, Tick

NO_GPU = "device: no GPU (cupy absent or no usable CUDA device): H2D bandwidth and feed overlap not measured"


def bandwidth(cp: ModuleType, host: np.ndarray, repeats: int) -> float:
    """Bytes/s of ``repeats`` host->device copies of ``host`` on a side stream."""
    dev = cp.empty(host.shape, host.dtype)
    stream = cp.cuda.Stream(non_blocking=True)
    dev.set(host, stream=stream)  # warm: allocation, first touch
    stream.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        dev.set(host, stream=stream)
    stream.synchronize()
    return host.nbytes * repeats / (time.perf_counter() - start)


def measure_device(make_loader: MakeLoader, workers: int, *, seconds: float = 1.0, step_s: float = 0.005,
                   tick: Optional[Tick] = None) -> List[str]:
    """Lines: pinned vs pageable H2D bandwidth of a slot, and the feeder's data wait with a simulated step."""
    from ..backend import get_backend
    from ..device import DeviceFeeder

    backend = get_backend()
    if not backend.gpu:
        return [NO_GPU]
    cp = backend.xp
    lines = []
    with make_loader(workers) as loader, DeviceFeeder(backend) as feeder:
        batches = 0
        deadline = time.perf_counter() + seconds
        feed = feeder.feed(loader, slots=loader.slot_arrays)
        try:
            for _batch in feed:
                cp.cuda.get_current_stream().synchronize()
                time.sleep(step_s)  # the trainer's step, during which the next copy overlaps
                batches += 1
                if tick is not None:
                    tick()
                if time.perf_counter() >= deadline and batches >= 3:
                    break
        finally:
            feed.close()
        stats = feeder.stats[-1]
        slot = loader.slot_arrays()[0]
        data = max(slot.values(), key=lambda a: a.nbytes)
        pinned = bandwidth(cp, data, 20)
        pageable = bandwidth(cp, np.array(data, copy=True), 20)
    lines.append(f"device: H2D of a {data.nbytes / 2**20:.1f} MiB slot: pinned {pinned / 1e9:.2f} GB/s, "
                 f"pageable copy {pageable / 1e9:.2f} GB/s ({pinned / pageable:.2f}x)")
    lines.append(f"device: DeviceFeeder with a {step_s * 1e3:.1f} ms step, {workers} workers: {stats.line()}")
    return lines
