"""Loader: the public iterator over fixed-shape batches filled by worker processes in shared memory.

::

    with Loader(source, [transforms...], batch_size=64, workers=4, seed=0) as loader:
        for epoch in range(10):
            for batch in loader:          # dict field -> np.ndarray, one epoch
                train(batch)              # views into a slot: valid until the next batch

Lifetime. Slots (``prefetch`` of them, in /dev/shm) and worker processes are
created at the first iteration and reused by every later pass; ``close()`` (or
leaving the ``with`` block, or the loader being garbage-collected, or the
interpreter exiting) stops the workers and unlinks the slots. An exception while
iterating (a worker error, KeyboardInterrupt) closes the loader; a later
iteration starts fresh workers.

Batches. Shapes come from ``transforms.output_spec(source.spec())``; dims still
unknown are fixed by running sample 0 through the transforms in this process
(rng of (seed, epoch, 0)). A yielded batch is a dict of views into a slot; the
slot is refilled once the next batch is requested; the last batch of a pass (also
an abandoned one) stays valid until the next pass takes its first batch
(``copy=True`` yields owned arrays). The last batch of a ``drop_last=False``
epoch may be short.

Position. ``iter(loader)`` continues from ``(epoch, next batch)``: a finished
pass moves to the next epoch, an abandoned one resumes where it stopped;
``set_epoch(e)`` restarts at batch 0 of epoch ``e``; ``state_dict()`` /
``load_state_dict()`` carry the position to a new loader (any worker count).

Across epochs. The workers do not idle at an epoch's end: once its last batch
is issued, the first batches of the next epoch go into the free slots, so the next
pass starts without waiting, as long as it continues where the last one left off
(the automatic next epoch, or ``set_epoch``/``load_state_dict`` naming that same
position). A pass that starts elsewhere discards the work issued ahead (workers
skip what they had not started; batches are unchanged) and, as the loader is
evidently repositioned each time (an evaluation loader at epoch 0, say), it stops
issuing ahead until a pass again continues where the previous one stopped.

Batch fast path. When the source is :class:`~feedstock.protocols.BatchReadable`
(``read_batch(indices, out=None)``) and every transform is a
:class:`~feedstock.protocols.BatchTransform` (deterministic, row-wise
``apply_batch``) or there are none, a chunk is filled with one vectorised read
(ArraySource, CsvTable, Hdf5's slice reads, CaffeLmdb of raw Datums with
CaffeTransform in settings that draw nothing). A source whose records cannot be
stacked (encoded Datums) or a transform whose settings are random answers
``NotImplemented``; rows are then filled one by one, with per-sample rngs.
Batches are the same either way; an error in a batch read is reported by the
per-row path, naming the record. A record whose shape or dtype does not fit the
batch (a float Datum among uint8 ones, another size or channel count, a value
that overflows the batch dtype) is an error naming its key, or skipped and
reported under ``on_error="skip"``: values are never cast unsafely (see
:mod:`feedstock.casting`).

Options (keyword-only; invalid values raise ValueError naming them):

* ``workers``: processes filling slots; 0 runs everything in this process (same
  batches, for debugging); "auto": a probe of about a second picks the count, 0
  included, within the usable cores and memory (:mod:`.auto`; ``stats()`` says
  why). ``start_method``: "auto" = fork when this process
  runs one Python thread, else spawn (see :mod:`.pool`).
* ``prefetch``: slots, counting the one being consumed. ``shuffle``, ``seed``,
  ``drop_last``, ``rank``, ``world_size``: see :mod:`.sampler`; rank and
  world_size default to torchrun's ``RANK``/``WORLD_SIZE``, read here, once.
* ``on_error``: "raise" (WorkerError with the worker's traceback and the record
  key; the loader closes) or "skip" (the row takes the next good record of this
  rank's order; counted, logged with a rate limit, listed by ``report()``; more
  than ``max_bad_fraction`` of an epoch raises TooManyBadRecords).
* ``timeout``: seconds a worker may spend on one task before WorkerTimeout
  (None: no limit). ``replace_dead_workers``: a killed worker is replaced and
  its tasks redone (the epoch's batches do not change), else WorkerDied.
* ``copy``: yield owned arrays. ``progress``: a tqdm bar per pass.

A feed server narrows a Loader to its part of the stream and leases batches
through :mod:`feedstock.remote.served` (private hooks ``_use_sampler`` and
``_iterate(keep=True)``); a benchmark picks how batches are split across
workers by overriding ``_new_run``.
"""
from __future__ import annotations

import functools
import weakref
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..loaders.dataset import adapt
from ..protocols import Source, TaskPool, Transform
from ..rng import check_seed
from ..spec import Spec
from ..transforms.base import as_compose
from .fill import Filler, FillPlan, batch_spec
from .pool import ProcessPool
from .resources import Resources, check_options, describe_task
from .run import InlinePool, Run
from .sampler import Sampler, dist_from_env
from .shm import SlotLayout, SlotRing
from .state import LoaderState, check_epoch
from .stats import BadRecords, RunStats

Batch = Dict[str, np.ndarray]


class Loader:
    """Batches of ``source`` through ``transforms``, filled by ``workers`` processes; see the module doc."""

    def __init__(
        self,
        source: Union[Source, Any],  # or any map-style dataset (see loaders.dataset)
        transforms: Union[Transform, Sequence[Transform], None] = None,
        *,
        batch_size: int = 64,
        workers: Union[int, str] = 4,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        prefetch: int = 4,
        on_error: str = "raise",
        max_bad_fraction: float = 0.01,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        timeout: Optional[float] = 120.0,
        replace_dead_workers: bool = True,
        copy: bool = False,
        progress: bool = False,
        start_method: str = "auto",
    ):
        # options first: the workers="auto" probe below takes about a second
        check_options(workers=workers, prefetch=prefetch, on_error=on_error, max_bad_fraction=max_bad_fraction,
                      timeout=timeout)
        seed = check_seed(seed)
        # a user's own dataset (a torch Dataset, a list of dicts) becomes a Source once, here; our Sources pass
        source, self._restore = adapt(source, seed=seed)  # restore: dict batches -> the dataset's structure
        self.auto = None  # workers="auto": a short probe picks the count; stats() reports it (see .auto)
        if workers == "auto":
            from .auto import choose_workers

            self.auto = choose_workers(source, transforms, loader_class=Loader, batch_size=batch_size, seed=seed,
                                       prefetch=prefetch, start_method=start_method)
            workers = self.auto.workers
        self.source, self.transforms = source, as_compose(transforms)
        rank, world_size = dist_from_env(rank, world_size)  # torchrun's env, read here only
        self.sampler = Sampler(len(source), batch_size=batch_size, shuffle=shuffle, seed=seed,
                               drop_last=drop_last, rank=rank, world_size=world_size)
        self.workers, self.prefetch, self.on_error = int(workers), int(prefetch), on_error
        self.timeout, self.replace_dead_workers, self.start_method = timeout, replace_dead_workers, start_method
        self.copy, self.progress = bool(copy), bool(progress)
        self._epoch, self._next = 0, 0
        self.spec: Spec = batch_spec(self.source, self.transforms, self.sampler.seed)
        self._layout = SlotLayout.of(self.spec, batch_size)
        self._bad = BadRecords(max_bad_fraction, self.sampler.shard_size)
        self._res = Resources()
        self._finalizer = weakref.finalize(self, self._res.close)  # GC and interpreter exit
        self._token = 0
        self._run: Optional[Run] = None
        self._discarded = 0  # batches filled ahead and thrown away by runs that are gone
        self._left_at: Optional[Tuple[int, int]] = None  # where the last pass stopped (None: no pass yet)
        self._live: Optional[RunStats] = None
        self._last_stats: Dict[str, float] = {}

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
            self._run = None

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def slot_arrays(self) -> List[Dict[str, np.ndarray]]:
        """Every slot's full-batch arrays, e.g. to register the memory with a GPU once; [] before a pass."""
        ring = self._res.ring
        return [dict(views) for views in ring.slots] if ring is not None else []

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

    def _iterate(self, keep: bool = False) -> Iterator[Any]:
        """One pass from the current position; ``keep``: yield ``(batch, release)`` leases instead of
        batches (:func:`feedstock.remote.served.leased` documents them)."""
        self._token += 1
        token = self._token
        epoch, start = self._epoch, self._next
        run, res = self._run_from(epoch, start)
        stats = self._live = RunStats(epoch, run.slots, self.workers)
        bar = self._progress_bar(epoch, start)
        try:
            for k in range(start, self.sampler.num_batches):
                _, _, slot, rows = run.take(stats, keep)
                self._next = k + 1
                if bar is not None:
                    bar.update(1)
                batch = self._batch(res.ring.slots[slot], rows)
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
            run = self._run = self._new_run(res.pool, epoch, start, res.ring.ctl)
        # Issue into the next epoch only while passes continue where the last one stopped.
        continues = self._left_at is None or self._left_at == (epoch, start)
        run.horizon = None if continues else (epoch + 1, 0)
        return run, res

    def _new_run(self, pool: TaskPool, epoch: int, start: int, ctl: Optional[np.ndarray]) -> Run:
        """The run issuing batches from ``(epoch, start)`` (a hook: bench/bench_loader.py's split study)."""
        slots = 1 if self.workers == 0 else self.prefetch
        return Run(pool, self.sampler, epoch, start, slots=slots, workers=self.workers, bad=self._bad, ctl=ctl)

    def _use_sampler(self, sampler: Sampler) -> None:
        """Batches from ``sampler`` from now on (a new seed; a feed server's part of the stream)."""
        if sampler.length != len(self.source) or sampler.batch_size != self._layout.batch_size:
            raise ValueError(f"{sampler!r} does not fit this loader's source and batch size")
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

    def _progress_bar(self, epoch: int, start: int):
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
            self._use_sampler(self.sampler.replace(seed=st.seed))
        self._epoch, self._next = st.position(self.sampler.num_batches)

    def stats(self) -> Dict[str, float]:
        """Throughput, per-stage seconds, consumer wait and slot occupancy of the current/last pass;
        bad records, worker restarts and batches filled ahead then discarded (repositioning) so far."""
        out = dict(self._live.summary() if self._live is not None else self._last_stats)
        out["bad_records"] = self._bad.total
        out["worker_restarts"] = self._res.restarts()
        out["discarded_batches"] = self._discarded + (self._run.discarded if self._run is not None else 0)
        if self.auto is not None:
            out.update(self.auto.stats())
        return out

    def report(self) -> Dict[str, Any]:
        """Skipped records (epoch, index, key, error) and worker restarts."""
        return {"bad_records": self._bad.total, "skipped": list(self._bad.records),
                "worker_restarts": self._res.restarts()}

    def __repr__(self) -> str:
        return (f"Loader({self.source!r}, batch_size={self.sampler.batch_size}, workers={self.workers}, "
                f"epoch={self._epoch}, next_batch={self._next})")
