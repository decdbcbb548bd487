"""``feedstock bench --engine ray``: the ray engine against the local Loader on the same stream, same run.

Both loaders stay open and rounds alternate (local, ray, local, ray, ...), so the
machine's noise hits both; the medians are compared. Ray's start-up (instance,
actors) and the first passes are not measured.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Tuple, Union

import numpy as np

Batch = Dict[str, np.ndarray]


def forever(loader: Iterable[Batch]) -> Iterator[Batch]:
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def rate(batches: Iterator[Batch], seconds: float) -> float:
    """Samples per second over about ``seconds``."""
    samples, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        samples += len(next(iter(next(batches).values())))
    return samples / (time.perf_counter() - t0)


def compare_rates(make: Callable[[str], Any], *, rounds: int = 3, seconds: float = 1.0,
                  warmup_batches: int = 8) -> Tuple[float, float, Dict[str, Any]]:
    """Median samples/s of ``make("local")`` and ``make("ray")``, and the ray loader's stats."""
    local = make("local")
    try:
        ray_loader = make("ray")
    except BaseException:
        local.close()
        raise
    try:
        its = {"local": forever(local), "ray": forever(ray_loader)}
        for it in its.values():  # start-up and warm caches, not measured
            for _ in range(warmup_batches):
                next(it)
        rates: Dict[str, List[float]] = {"local": [], "ray": []}
        for _ in range(rounds):
            for engine, it in its.items():
                rates[engine].append(rate(it, seconds))
        stats = ray_loader.stats()
    finally:
        local.close()
        ray_loader.close()
    return statistics.median(rates["local"]), statistics.median(rates["ray"]), stats


def bench_stream(stream: Any, phase: Union[int, str], *, workers: int, seconds: float) -> List[str]:
    """Lines for ``feedstock bench --engine ray``: both engines on ``stream`` with ``workers`` each."""
    source = stream.build_source(caffe_layout=True)

    def make(engine: str) -> Any:
        return stream.build_loader(phase, caffe_layout=True, source=source, engine=engine, workers=workers,
                                   address=stream.address if engine == "ray" else None)

    local, ray, stats = compare_rates(make, seconds=seconds)
    where = stream.address or f"a local Ray instance, {workers} CPUs"
    return [f"ray engine ({where}): {ray:.0f} samples/s; local Loader ({workers} workers): {local:.0f} samples/s; "
            f"ratio {ray / max(local, 1e-9):.2f}x",
            f"  ray: {stats['actors']} actors, {stats['group']} batches per call, "
            f"{len(stats['batches_by_node'])} nodes made batches"]
