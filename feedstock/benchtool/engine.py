"""The measuring engine behind ``feedstock bench``: stages, the worker sweep, memory, the verdict.

::

    subject = Subject.of_stream(stream)                  # or Subject.of_parts(source, transforms, batch_size=64)
    result = run_bench(subject, counts=[1, 2], seconds=0.5)
    print(report.table(result))

Each measurement takes about ``seconds`` of steady state (after start-up), so a
whole run costs about ``seconds x (4 + 1 + len(counts))`` plus start-ups, plus the
second of the ``workers="auto"`` probe, whose choice the result reports too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence

from ..pipeline import machine
from ..pipeline.fill import batch_spec
from ..transforms.base import as_compose
from .memory import memory_of
from .report import BenchResult
from .stages import measure_stages, stage_names
from .sweep import MakeLoader, Tick, default_counts, measure_loader
from .verdict import judge

Step = Callable[[str], None]  # the engine names each measurement as it starts it (a progress bar)


@dataclass
class Subject:
    """What to measure: a source and its transforms, and how to make its Loader at a worker count."""

    source: Any
    transforms: List[Any]
    make_loader: MakeLoader
    batch_size: int
    seed: int
    description: str

    @classmethod
    def of_stream(cls, stream: Any, phase: Any = "train") -> "Subject":
        from ..pipeline.loader import Loader
        from ..stream import parse_phase
        from ..stream.build import build_transforms

        options = stream.loader_options().as_kwargs()
        options.pop("workers")  # the sweep sets it
        seed = options["seed"]
        kind = stream.kind()
        source = stream.build_source(caffe_layout=True)  # CSV rows as (F, 1, 1), as train reads them
        # built once (a pairs stream without a crop scans every image for its padding; a mean_file is read)
        transforms = build_transforms(stream, kind, parse_phase(phase), source)
        return cls(source, transforms, lambda n: Loader(source, transforms, workers=n, **options),
                   stream.batch_size, seed, f"{stream.source} ({kind})")

    @classmethod
    def of_parts(cls, source: Any, transforms: Any = None, *, batch_size: int = 64, seed: int = 0,
                 description: str = "", **loader_kw: Any) -> "Subject":
        from ..pipeline.loader import Loader

        kw = dict(dict(shuffle=True, drop_last=False), **loader_kw)
        ts = list(as_compose(transforms).transforms)
        return cls(source, ts, lambda n: Loader(source, ts, batch_size=batch_size, workers=n, seed=seed, **kw),
                   batch_size, seed, description or repr(source))


def run_bench(subject: Subject, *, counts: Optional[Sequence[int]] = None, seconds: float = 1.0,
              compare: Optional[str] = None, step: Optional[Step] = None, tick: Optional[Tick] = None) -> BenchResult:
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
                            batch_size=subject.batch_size)
    points = []
    for n in [0] + [c for c in counts if c > 0]:
        say("in-process (workers=0)" if n == 0 else f"Loader, {n} worker{'s' if n > 1 else ''}")
        points.append(measure_loader(subject.make_loader, n, seconds=seconds, tick=tick))
    torch_rates = {}
    if compare == "torch":
        from .compare import compare_torch

        say("torch DataLoader")
        torch_rates = compare_torch(subject.source, compose, [p.workers for p in points],
                                    batch_size=subject.batch_size, seconds=seconds, seed=subject.seed, tick=tick)
    say("workers='auto' probe")
    with subject.make_loader("auto") as auto_loader:  # type: ignore[arg-type]  # what Loader(workers="auto") would pick here
        auto = auto_loader.auto
    memory = memory_of(points)
    per_record = stages.per_record()
    names = stage_names(stages)
    verdict = judge({k: per_record[k] for k in names}, {k: stages.cpu_fraction(k) for k in names},
                    {p.workers: p.rate for p in points}, cores, memory.max_workers())
    return BenchResult(subject.description, subject.batch_size, cores, stages, points, memory, verdict,
                       torch_rates, auto=auto)
