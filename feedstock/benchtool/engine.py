"""The measuring engine behind ``feedstock bench``: stages, the worker sweep, memory, the verdict.

::

    subject = Subject.of_stream(stream)                  # or Subject.of_parts(source, transforms, batch_size=64)
    result = run_bench(subject, counts=[1, 2], seconds=0.5)
    print(report.table(result))

The stages take about ``seconds`` in all; each worker count (0 = in-process first) about
``seconds`` of steady state, split over ``repeats`` interleaved windows
(:func:`feedstock.pipeline.auto.measure_counts`, the measurement ``workers="auto"`` makes),
so a whole run costs about ``seconds x (2 + len(counts))`` plus start-ups. The recommended
count and ``workers="auto"``'s choice are one call of :func:`feedstock.pipeline.auto.recommend`
on those windows: the result reports both and they cannot differ.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

from ..pipeline import machine
from ..pipeline.auto import CONSUMER_THREADS, REPEATS, measure_counts
from ..pipeline.fill import batch_spec
from ..protocols import Source, Transform
from ..transforms.base import as_compose
from .memory import memory_of
from .report import BenchResult
from .stages import measure_stages, stage_names
from .sweep import MakeLoader, SweepPoint, Tick, default_counts
from .verdict import judge

if TYPE_CHECKING:
    from ..stream import Stream

Step = Callable[[str], None]  # the engine names each measurement as it starts it (a progress bar)


@dataclass
class Subject:
    """What to measure: a source and its transforms, and how to make its Loader at a worker count."""

    source: Source
    transforms: Sequence[Transform]
    make_loader: MakeLoader
    batch_size: int
    seed: int
    description: str
    load_s: Optional[float] = None  # seconds the source took to open (a CSV's parse); None: not timed

    @classmethod
    def of_stream(cls, stream: Stream, phase: Union[int, str] = "train") -> "Subject":
        from ..pipeline.loader import Loader
        from ..stream import parse_phase
        from ..stream.build import build_transforms

        options = stream.loader_options().as_kwargs()
        options.pop("workers")  # the sweep sets it
        seed = options["seed"]
        kind = stream.kind()
        t0 = time.perf_counter()
        source = stream.build_source(caffe_layout=True)  # CSV rows as (F, 1, 1), as train reads them
        load_s = time.perf_counter() - t0
        # built once (a pairs stream without a crop scans every image for its padding; a mean_file is read)
        transforms = build_transforms(stream, kind, parse_phase(phase), source)
        return cls(source, transforms, lambda n: Loader(source, transforms, workers=n, **options),
                   stream.batch_size, seed, f"{stream.source} ({kind})", load_s)

    @classmethod
    def of_parts(cls, source: Source, transforms: Union[Transform, Sequence[Transform], None] = None, *,
                 batch_size: int = 64, seed: int = 0, description: str = "", **loader_kw: Any) -> "Subject":
        from ..pipeline.loader import Loader

        kw = dict(dict(shuffle=True, drop_last=False), **loader_kw)
        ts = list(as_compose(transforms).transforms)
        return cls(source, ts, lambda n: Loader(source, ts, batch_size=batch_size, workers=n, seed=seed, **kw),
                   batch_size, seed, description or repr(source))


def run_bench(subject: Subject, *, counts: Optional[Sequence[int]] = None, seconds: float = 1.0,
              compare: Optional[str] = None, step: Optional[Step] = None, tick: Optional[Tick] = None,
              repeats: int = REPEATS, consumer_threads: int = CONSUMER_THREADS) -> BenchResult:
    """Measure ``subject`` (see the module doc); ``compare="torch"`` adds torch's DataLoader."""
    if seconds <= 0:
        raise ValueError(f"{seconds=} must be positive")
    if compare not in (None, "torch"):
        raise ValueError(f"compare={compare!r}: only 'torch' can be compared")
    say = step or (lambda _: None)
    cores = machine.usable_cores()
    counts = sorted(set(counts)) if counts else default_counts(cores)
    say("stages (1 core)")
    compose = as_compose(subject.transforms)
    spec = batch_spec(subject.source, compose, subject.seed)
    stages = measure_stages(subject.source, compose, spec, seconds=seconds, seed=subject.seed,
                            batch_size=subject.batch_size, load_s=subject.load_s)
    sweep = [0] + [c for c in counts if c > 0]

    def announce(r: int, n: int) -> None:
        if r == 0:
            say("in-process (workers=0)" if n == 0 else f"Loader, {n} worker{'s' if n > 1 else ''}")

    windows = measure_counts(subject.make_loader, sweep, window_s=seconds / repeats, repeats=repeats, tick=tick,
                             on_window=announce)
    points = [SweepPoint.of(windows[n]) for n in sweep]
    torch_rates = {}
    if compare == "torch":
        from .compare import compare_torch

        say("torch DataLoader")
        torch_rates = compare_torch(subject.source, compose, [p.workers for p in points],
                                    batch_size=subject.batch_size, seconds=seconds, seed=subject.seed, tick=tick)
    memory = memory_of(points)
    per_record = stages.per_record()
    names = stage_names(stages)
    verdict = judge({k: per_record[k] for k in names}, {k: stages.cpu_fraction(k) for k in names},
                    {p.workers: p.rates for p in points}, cores, memory.max_workers(), consumer_threads)
    return BenchResult(subject.description, subject.batch_size, cores, stages, points, memory, verdict,
                       torch_rates, auto=verdict.choice, consumer_threads=consumer_threads)
