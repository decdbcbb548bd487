"""RayLoader: the Loader's batches, made by Ray actors on whatever nodes of a cluster have CPUs.

::

    with RayLoader(source, [transforms...], batch_size=64, seed=0, address="auto") as loader:
        for epoch in range(10):
            for batch in loader:        # dict field -> np.ndarray, one epoch, read-only
                train(batch)

Same face as :class:`feedstock.pipeline.loader.Loader` (iteration, ``len``,
``set_epoch``, ``state_dict``/``load_state_dict`` in the same format, context
manager, ``stats``/``report``) and the same batches, bit for bit, for the same
source, transforms, seed, epoch and shard: each actor runs the
pipeline's own Sampler, per-sample rngs and fill code (:mod:`.ray_maker`). A
``state_dict()`` taken here resumes a local Loader and the other way round.

docs/architecture.md ("The Ray engine (RayLoader)") has the rest of the design.
"""
from __future__ import annotations

import weakref
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..pipeline.fill import batch_spec
from ..pipeline.options import DEFAULTS, LoaderOptions
from ..pipeline.sampler import Sampler, shard_or_env
from ..pipeline.shm import SlotLayout
from ..pipeline.state import LoaderState, check_epoch
from ..pipeline.stats import BadRecords, RunStats
from ..protocols import Source, Transform
from ..rng import check_seed
from ..shard import shard_of
from ..spec import Spec
from ..transforms.base import as_compose
from .ray_pool import ActorPool
from .ray_run import RayRun
from .ray_session import RaySession

Batch = Dict[str, np.ndarray]


class _Held:
    """What the loader owns in Ray (session, actors, the run); released by close() or the finalizer."""

    def __init__(self) -> None:
        self.session: Optional[RaySession] = None
        self.pool: Optional[ActorPool] = None
        self.run: Optional[RayRun] = None

    def close(self) -> None:
        run, pool, session, self.run, self.pool, self.session = self.run, self.pool, self.session, None, None, None
        try:
            if run is not None:
                run.close()
            if pool is not None:
                pool.close()
        finally:
            if session is not None:
                session.close()


class RayLoader:
    """Batches of ``source`` through ``transforms``, made by Ray actors; see the module doc. The options and
    their defaults are the Loader's (:data:`feedstock.pipeline.options.DEFAULTS`): the same keywords give
    the same batches. ``workers`` sizes a Ray instance this loader starts (0 or "auto": all CPUs)."""

    def __init__(self, source: Source, transforms: Union[Transform, Sequence[Transform], None] = None, *,
                 batch_size: int = DEFAULTS.batch_size, workers: Union[int, str] = DEFAULTS.workers,
                 shuffle: bool = DEFAULTS.shuffle, seed: int = DEFAULTS.seed, drop_last: bool = DEFAULTS.drop_last,
                 prefetch: int = DEFAULTS.prefetch, on_error: str = DEFAULTS.on_error,
                 max_bad_fraction: float = DEFAULTS.max_bad_fraction,
                 shard: Optional[Tuple[int, int]] = DEFAULTS.shard, timeout: Optional[float] = DEFAULTS.timeout,
                 copy: bool = DEFAULTS.copy, progress: bool = DEFAULTS.progress, address: Optional[str] = None,
                 max_actors: Optional[int] = None, init_kwargs: Optional[Dict[str, Any]] = None,
                 start_method: str = DEFAULTS.start_method, replace_dead_workers: bool = DEFAULTS.replace_dead_workers,
                 rank: Optional[int] = None, world_size: Optional[int] = None):  # deprecated: shard=
        workers = 0 if workers == "auto" else workers  # Ray's CPUs are the workers: "auto" takes them all
        shard = LoaderOptions(workers=workers, prefetch=prefetch, on_error=on_error, max_bad_fraction=max_bad_fraction,
                              timeout=timeout, shard=shard_of(shard, rank, world_size, where="RayLoader: ")
                              ).shard  # the Loader's rules, one validator
        if max_actors is not None and (isinstance(max_actors, bool) or int(max_actors) < 1):
            raise ValueError(f"{max_actors=} must be a positive number of actors or None (one per CPU)")
        seed = check_seed(seed)
        self.source, self.transforms = source, as_compose(transforms)
        self.sampler = Sampler(len(source), batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                               shard=shard_or_env(shard))
        self.workers, self.prefetch, self.on_error = int(workers), int(prefetch), on_error
        self.timeout, self.copy, self.progress = timeout, bool(copy), bool(progress)
        self.address, self.max_actors, self.init_kwargs = address, max_actors, dict(init_kwargs or {})
        self.spec: Spec = batch_spec(self.source, self.transforms, self.sampler.seed)
        self._layout = SlotLayout.of(self.spec, batch_size)
        self._bad = BadRecords(max_bad_fraction, self.sampler.shard_size)
        self._held = _Held()
        self._finalizer = weakref.finalize(self, self._held.close)
        self._epoch, self._next = 0, 0
        self._token = 0
        self._left_at: Optional[Tuple[int, int]] = None
        self._live: Optional[RunStats] = None
        self._last_stats: Dict[str, float] = {}
        self._past = {"redone_batches": 0, "discarded_batches": 0, "actors_lost": 0}

    # ----- resources -------------------------------------------------------------------------
    def start(self) -> "RayLoader":
        """Connect to (or start) Ray and start the actors now; the first iteration does it otherwise."""
        held = self._held
        if held.pool is None:
            try:
                held.session = RaySession(self.address, self.workers, self.init_kwargs)
                ray = held.session.ray
                args = (ray.put(self.source), ray.put(self.transforms), self.sampler, self._layout,
                        self.on_error == "skip")
                held.pool = ActorPool(ray, args, max_actors=self.max_actors)
                held.pool.grow(force=True)
            except BaseException:
                held.close()
                raise
        return self

    def close(self) -> None:
        """Stop the actors and drop every Ray object of this loader; shut Ray down if the loader started it."""
        self._token += 1
        run, pool = self._held.run, self._held.pool
        if run is not None:
            for name, value in (("redone_batches", run.redone), ("discarded_batches", run.discarded)):
                self._past[name] += value
        if pool is not None:
            self._past["actors_lost"] += pool.lost
        self._held.close()

    def __enter__(self) -> "RayLoader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def slot_arrays(self) -> List[Dict[str, np.ndarray]]:
        """No fixed slots: each batch is its own object in Ray's store (a GPU feeder copies it)."""
        return []

    def worker_pids(self) -> List[int]:
        """Actor processes may live on other hosts: none is a local worker to measure."""
        return []

    # ----- iteration -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.sampler.num_batches

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Start the next pass at batch 0 of ``epoch``."""
        self._epoch, self._next = check_epoch(epoch), 0

    def __iter__(self) -> Iterator[Batch]:
        self._token += 1
        token = self._token
        epoch, start = self._epoch, self._next
        run = self._run_from(epoch, start)
        stats = self._live = RunStats(epoch, self.prefetch, len(self._held.pool.ready) if self._held.pool else 0)
        bar = self._progress_bar(epoch, start)
        try:
            for k in range(start, self.sampler.num_batches):
                arrays, rows = run.take(stats)
                self._next = k + 1
                if bar is not None:
                    bar.update(1)
                yield {name: v.copy() for name, v in arrays.items()} if self.copy else arrays
                if token != self._token:
                    raise RuntimeError("this iterator is stale: the loader was closed or iterated again")
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
            if self._live is stats:
                self._left_at, self._live = (self._epoch, self._next), None

    def _run_from(self, epoch: int, start: int) -> RayRun:
        self.start()
        held = self._held
        if held.run is None:
            session, pool = held.session, held.pool
            assert session is not None and pool is not None  # start() made them
            held.run = RayRun(session.ray, pool, self.sampler, epoch, start, window=self.prefetch, timeout=self.timeout,
                              bad=self._bad)
        elif held.run.pos != (epoch, start):
            held.run.restart(epoch, start)
        # issue into the next epoch only while passes continue where the last one stopped
        continues = self._left_at is None or self._left_at == (epoch, start)
        held.run.horizon = None if continues else (epoch + 1, 0)
        return held.run

    def _progress_bar(self, epoch: int, start: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=len(self), initial=start, unit="batch", desc=f"epoch {epoch} (ray)", leave=False)

    # ----- state and observability -----------------------------------------------------------
    def state_dict(self) -> Dict[str, int]:
        """Where the next batch comes from, in the local Loader's format (either engine resumes it)."""
        s = self.sampler
        return LoaderState(s.seed, self._epoch, self._next, s.batch_size, s.world_size, s.length).to_dict()

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue exactly with the batch that came next when ``state`` was taken (on either engine)."""
        st = LoaderState.from_dict(state)
        st.check(self.sampler)
        if st.seed != self.sampler.seed:  # actors take the seed with each call: they stay
            self.sampler = self.sampler.replace(seed=st.seed)
            if self._held.run is not None:
                self._held.run.use_sampler(self.sampler)
            self._left_at = None
        self._epoch, self._next = st.position(self.sampler.num_batches)

    def stats(self) -> Dict[str, Any]:
        """The pass's throughput and stage seconds (as the Loader's), plus actors, nodes and redone batches."""
        out: Dict[str, Any] = dict(self._live.summary() if self._live is not None else self._last_stats)
        run, pool = self._held.run, self._held.pool
        out["bad_records"] = self._bad.total
        out["actors"] = len(pool.ready) if pool is not None else 0
        out["actors_lost"] = self._past["actors_lost"] + (pool.lost if pool is not None else 0)
        out["redone_batches"] = self._past["redone_batches"] + (run.redone if run is not None else 0)
        out["discarded_batches"] = self._past["discarded_batches"] + (run.discarded if run is not None else 0)
        out["batches_by_node"] = dict(run.made_by) if run is not None else {}
        out["group"] = run.group() if run is not None else 1
        return out

    def report(self) -> Dict[str, Any]:
        """Skipped records (epoch, index, key, error), as the Loader's report."""
        return {"bad_records": self._bad.total, "skipped": list(self._bad.records),
                "worker_restarts": self.stats()["actors_lost"]}

    def __repr__(self) -> str:
        where = self.address or "a local Ray instance"
        return (f"RayLoader({self.source!r}, batch_size={self.sampler.batch_size}, on {where}, "
                f"epoch={self._epoch}, next_batch={self._next})")
