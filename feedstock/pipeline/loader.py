"""Loader: the public iterator over fixed-shape batches filled by worker processes in shared memory.

::

    with Loader(source, [transforms...], batch_size=64, workers=4, seed=0) as loader:
        for epoch in range(10):
            for batch in loader:          # dict field -> np.ndarray, one epoch
                train(batch)              # views into a slot: valid until the next batch

Slots and workers start at the first iteration and live until ``close()``. A
yielded batch is a view into a slot, valid until the next batch is requested
(``copy=True`` yields owned arrays). ``iter(loader)`` continues from
``(epoch, next batch)``; ``set_epoch`` and ``state_dict``/``load_state_dict``
move it. Options and their defaults are :class:`~.options.LoaderOptions`' (the
stream's). Seams, injected at construction: ``sampler=`` (which indices make batch
k; a feed server's part of the stream) and ``split=`` (the :mod:`.split` policy);
:meth:`Loader.leased` hands batches out as leases (:mod:`.slots`).
docs/pipeline.md describes lifetime, epochs, the batch fast path and the options
at length.
"""
from __future__ import annotations

import functools
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Generator,
    Iterator,
    List,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np

from ..loaders.dataset import adapt
from ..protocols import Source, TaskPool, Transform
from ..shard import shard_of
from ..spec import Spec
from ..transforms.base import as_compose
from .fill import Filler, FillPlan, batch_spec, fast_path_ok
from .options import DEFAULTS, LoaderOptions
from .pool import ProcessPool
from .resources import Resources, describe_task
from .run import InlinePool, Run
from .sampler import Sampler, shard_or_env
from .shm import SlotLayout, SlotRing
from .split import WorkSplit, check_split
from .state import LoaderState, check_epoch
from .stats import BadRecords, RunStats

if TYPE_CHECKING:
    from tqdm import tqdm

Batch = Dict[str, np.ndarray]
Release = Callable[[], None]


Leases = Generator[Tuple[Batch, Release], None, None]  # close() abandons the pass


class Loader:
    """Batches of ``source`` through ``transforms``, filled by ``workers`` processes; see the module doc."""

    def __init__(
        self,
        source: Union[Source, Any],  # or any map-style dataset (see loaders.dataset)
        transforms: Union[Transform, Sequence[Transform], None] = None,
        *,
        batch_size: int = DEFAULTS.batch_size,
        workers: Union[int, str] = DEFAULTS.workers,
        shuffle: bool = DEFAULTS.shuffle,
        seed: int = DEFAULTS.seed,
        drop_last: bool = DEFAULTS.drop_last,
        prefetch: int = DEFAULTS.prefetch,
        on_error: str = DEFAULTS.on_error,
        max_bad_fraction: float = DEFAULTS.max_bad_fraction,
        shard: Optional[Tuple[int, int]] = DEFAULTS.shard,
        timeout: Optional[float] = DEFAULTS.timeout,
        replace_dead_workers: bool = DEFAULTS.replace_dead_workers,
        copy: bool = DEFAULTS.copy,
        progress: bool = DEFAULTS.progress,
        start_method: str = DEFAULTS.start_method,
        sampler: Optional[Sampler] = None,
        split: str = "auto",
        rank: Optional[int] = None,  # deprecated: shard=(rank, world_size)
        world_size: Optional[int] = None,
    ):
        # options first: the workers="auto" probe below takes about a second
        opts = self.options = LoaderOptions(
            batch_size=batch_size, workers=workers, shuffle=shuffle, seed=seed, drop_last=drop_last,
            prefetch=prefetch, on_error=on_error, max_bad_fraction=max_bad_fraction,
            shard=shard_of(shard, rank, world_size, where="Loader: "), timeout=timeout,
            replace_dead_workers=replace_dead_workers, copy=copy,
            progress=progress, start_method=start_method)
        self.split = check_split(split)
        # a user's own dataset (a torch Dataset, a list of dicts) becomes a Source once, here; our Sources pass
        source, self._restore = adapt(source, seed=opts.seed)  # restore: dict batches -> the dataset's structure
        self.auto = None  # workers="auto": a short probe picks the count; stats() reports it (see .auto)
        if opts.workers == "auto":
            from .auto import choose_workers

            self.auto = choose_workers(source, transforms, loader_class=Loader, batch_size=opts.batch_size,
                                       seed=opts.seed, prefetch=opts.prefetch, start_method=opts.start_method)
        self.source, self.transforms = source, as_compose(transforms)
        if sampler is None:
            sampler = Sampler(len(source), batch_size=opts.batch_size, shuffle=opts.shuffle, seed=opts.seed,
                              drop_last=opts.drop_last, shard=shard_or_env(opts.shard))  # torchrun's env, read here only
        self._check_sampler(sampler, opts.batch_size)
        self.sampler = sampler
        self.workers = self.auto.workers if self.auto is not None else int(opts.workers)
        self.prefetch, self.on_error = opts.prefetch, opts.on_error
        self.timeout, self.replace_dead_workers, self.start_method = opts.timeout, opts.replace_dead_workers, \
            opts.start_method
        self.copy, self.progress = opts.copy, opts.progress
        self._epoch, self._next = 0, 0
        self.spec: Spec = batch_spec(self.source, self.transforms, self.sampler.seed)
        self._layout = SlotLayout.of(self.spec, opts.batch_size)
        self._bad = BadRecords(opts.max_bad_fraction, self.sampler.shard_size)
        self._res = Resources()
        self._finalizer = weakref.finalize(self, self._res.close)  # GC and interpreter exit
        self._token = 0
        self._run: Optional[Run] = None
        self._discarded = 0  # batches filled ahead and thrown away by runs that are gone
        self._tasks = 0  # tasks submitted by runs that are gone
        self._left_at: Optional[Tuple[int, int]] = None  # where the last pass stopped (None: no pass yet)
        self._live: Optional[RunStats] = None
        self._last_stats: Dict[str, float] = {}

    @classmethod
    def from_options(cls, source: Source, transforms: Union[Transform, Sequence[Transform], None],
                     options: LoaderOptions, *, sampler: Optional[Sampler] = None, split: str = "auto") -> "Loader":
        """The Loader of ``options`` (e.g. ``Stream.loader_options()``), with the same seams as the constructor."""
        return cls(source, transforms, **options.as_kwargs(), sampler=sampler, split=split)

    def _check_sampler(self, sampler: Sampler, batch_size: int) -> None:
        if sampler.length != len(self.source) or sampler.batch_size != batch_size:
            raise ValueError(f"{sampler!r} does not fit this loader's source ({len(self.source)} records) and "
                             f"{batch_size=}")

    # ----- resources -------------------------------------------------------------------------
    def _start(self) -> Resources:
        if self._res.pool is None:
            try:
                self._create(self._res)
            except BaseException:
                self._res.close()  # nothing half-made stays behind (slots without workers, say)
                raise
        return self._res

    def _create(self, res: Resources) -> None:
        plan = FillPlan(self.source, self.transforms, self.sampler, self._layout, skip=self.on_error == "skip")
        if self.workers == 0:
            res.ring = SlotRing.local(self._layout, 1)
            describe = functools.partial(describe_task, self.source, self.sampler, None)
            res.pool = InlinePool(Filler(plan, res.ring, 0, self.source), describe)
            return
        # one control entry per worker (the record it is on) plus the run's generation (see run.py)
        res.ring = SlotRing.create(self._layout, self.prefetch, ctl_entries=self.workers + 1)
        plan.slot_names, plan.ctl_name = res.ring.names, res.ring.ctl_name
        describe = functools.partial(describe_task, self.source, self.sampler, res.ring.ctl)
        res.pool = ProcessPool(plan, workers=self.workers, start_method=self.start_method, timeout=self.timeout,
                               replace_dead=self.replace_dead_workers, describe=describe, name="feedstock")
        res.pool.start()

    def start(self) -> "Loader":
        """Create the slots and start the workers now (say, to fork them before this process starts threads)."""
        self._start()
        return self

    def close(self) -> None:
        """Stop the workers and unlink the slots (idempotent); the next iteration starts afresh."""
        self._token += 1  # any live iterator is now stale
        self._drop_run()
        self._res.close()

    def _drop_run(self) -> None:
        if self._run is not None:
            self._discarded += self._run.discarded + len(self._run.issued())
            self._tasks += self._run.tasks
            self._run = None

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def slot_arrays(self) -> List[Dict[str, np.ndarray]]:
        """Every slot's full-batch arrays, e.g. to register the memory with a GPU once; [] before a pass."""
        ring = self._res.ring
        return [dict(views) for views in ring.slots] if ring is not None else []

    def shm_files(self) -> List[str]:
        """The /dev/shm files this loader holds now (its slots and control block); [] before a pass."""
        ring = self._res.ring
        if ring is None:
            return []
        return list(ring.names) + ([ring.ctl_name] if ring.ctl_name else [])

    def worker_pids(self) -> List[int]:
        return list(self._res.pool.pids) if self._res.pool is not None else []

    # ----- iteration -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.sampler.num_batches

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Start the next pass at batch 0 of ``epoch`` (reshuffled from (seed, epoch))."""
        self._epoch, self._next = check_epoch(epoch), 0

    def __iter__(self) -> Iterator[Batch]:
        return self._iterate()

    def leased(self) -> Leases:
        """One pass like ``iter(loader)``, yielding ``(batch, release)``: the batch's slot stays valid until
        ``release()`` is called, whatever is asked for meanwhile (fewer than ``prefetch`` may be held at
        once; a repositioned loader drops its leases, and their late releases do nothing). A feed server
        sends batches straight from the slots this way."""
        return self._iterate(keep=True)

    def _iterate(self, keep: bool = False) -> Generator[Any, None, None]:
        """One pass from the current position; ``keep``: yield leases (see :meth:`leased`)."""
        self._token += 1
        token = self._token
        epoch, start = self._epoch, self._next
        run, res = self._run_from(epoch, start)
        _, ring = res.live()
        stats = self._live = RunStats(epoch, run.slots, self.workers)
        bar = self._progress_bar(epoch, start)
        try:
            for k in range(start, self.sampler.num_batches):
                _, _, slot, rows = run.take(stats, keep)
                self._next = k + 1
                if bar is not None:
                    bar.update(1)
                batch = self._batch(ring.slots[slot], rows)
                yield (batch, functools.partial(run.release_slot, slot, run.resets)) if keep else batch
                if token != self._token:
                    raise RuntimeError("this iterator is stale: the loader was closed or iterated again")
            # The last batch's slot stays held (the user may still read it after the loop);
            # the next pass frees it when it takes its first batch.
            self._epoch, self._next = epoch + 1, 0
        except GeneratorExit:
            raise  # abandoned: what is in flight stays for a pass that continues here
        except BaseException:
            if token == self._token:
                self.close()
            raise
        finally:
            if bar is not None:
                bar.close()
            self._last_stats = stats.summary()
            if self._live is stats:  # the latest pass (also when it closed the loader)
                self._left_at, self._live = (self._epoch, self._next), None

    def _run_from(self, epoch: int, start: int) -> Tuple[Run, Resources]:
        """The run handing out ``(epoch, start)`` next: the live one when it is there already."""
        res = self._start()
        run = self._run if self._run is not None and self._run.pool is res.pool else None
        if run is not None and run.pos != (epoch, start):
            if not run.restart(epoch, start, timeout=self.timeout or 60.0):
                self._drop_run()
                self._res.close()  # a worker would not finish: start afresh
                res, run = self._start(), None
        if run is None:
            pool, ring = res.live()
            run = self._run = self._new_run(pool, epoch, start, ring.ctl)
        # Issue into the next epoch only while passes continue where the last one stopped.
        continues = self._left_at is None or self._left_at == (epoch, start)
        run.horizon = None if continues else (epoch + 1, 0)
        return run, res

    def _new_run(self, pool: TaskPool, epoch: int, start: int, ctl: Optional[np.ndarray]) -> Run:
        """The run issuing batches from ``(epoch, start)``, with a fresh work-split estimate."""
        slots = 1 if self.workers == 0 else self.prefetch
        split = WorkSplit(self.split, workers=self.workers, slots=slots, batch_size=self.sampler.batch_size)
        return Run(pool, self.sampler, epoch, start, split=split, bad=self._bad, ctl=ctl)

    def use_sampler(self, sampler: Sampler) -> None:
        """Batches from ``sampler`` from now on, starting at epoch 0 (another seed; a feed server's part
        of the stream): it must fit the source and batch size; a started loader restarts its workers."""
        self._check_sampler(sampler, self._layout.batch_size)
        self.close()  # workers hold the old sampler
        self.sampler = sampler
        self._bad.shard_size = sampler.shard_size  # the budget of bad records per epoch; totals carry on
        self._epoch, self._next, self._left_at = 0, 0, None

    def _batch(self, views: Mapping[str, np.ndarray], rows: int) -> Any:
        full = rows == self.sampler.batch_size
        if self.copy:
            batch = {name: (v if full else v[:rows]).copy() for name, v in views.items()}
        else:
            batch = {name: v if full else v[:rows] for name, v in views.items()}
        return batch if self._restore is None else self._restore(batch)

    def _progress_bar(self, epoch: int, start: int) -> Optional["tqdm[NoReturn]"]:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        class Bar(tqdm):  # no monitor thread: a live thread would make later workers use spawn
            monitor_interval = 0

        return Bar(total=len(self), initial=start, unit="batch", desc=f"epoch {epoch}", leave=False)

    # ----- state and observability -----------------------------------------------------------
    def state_dict(self) -> Dict[str, int]:
        """Where the next batch comes from: seed, epoch, next batch (and setup checks)."""
        s = self.sampler
        return LoaderState(s.seed, self._epoch, self._next, s.batch_size, s.world_size, s.length).to_dict()

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue exactly with the batch that came next when ``state`` was taken."""
        st = LoaderState.from_dict(state)
        st.check(self.sampler)
        if st.seed != self.sampler.seed:
            self.use_sampler(self.sampler.replace(seed=st.seed))
        self._epoch, self._next = st.position(self.sampler.num_batches)

    @property
    def fast_path(self) -> bool:
        """Whether chunks are filled by the batch fast path (docs/pipeline.md): its conditions hold and,
        with ``workers=0``, no batch read has yet answered NotImplemented."""
        pool = self._res.pool
        if isinstance(pool, InlinePool) and isinstance(pool.handler, Filler):
            return pool.handler.fast
        return fast_path_ok(self.source, self.transforms)

    def issued_ahead(self) -> List[Tuple[int, int]]:
        """``(epoch, batch)`` positions being filled or filled and not yet handed out, in order."""
        return self._run.issued() if self._run is not None else []

    def stats(self) -> Dict[str, float]:
        """Throughput, per-stage seconds, consumer wait and slot occupancy of the current/last pass;
        bad records, worker restarts, tasks sent to workers and batches filled ahead then discarded
        (repositioning) so far."""
        out = dict(self._live.summary() if self._live is not None else self._last_stats)
        out["bad_records"] = self._bad.total
        out["worker_restarts"] = self._res.restarts()
        out["discarded_batches"] = self._discarded + (self._run.discarded if self._run is not None else 0)
        out["tasks"] = self._tasks + (self._run.tasks if self._run is not None else 0)
        if self.auto is not None:
            out.update(self.auto.stats())
        return out

    def report(self) -> Dict[str, object]:
        """Skipped records (epoch, index, key, error) and worker restarts."""
        return {"bad_records": self._bad.total, "skipped": list(self._bad.records),
                "worker_restarts": self._res.restarts()}

    def __repr__(self) -> str:
        return (f"Loader({self.source!r}, batch_size={self.sampler.batch_size}, workers={self.workers}, "
                f"epoch={self._epoch}, next_batch={self._next})")
