"""The door for users' own data: a map-style dataset (``__len__``/``__getitem__``) becomes a Source, once.

::

    loader = Loader(MyDataset(), batch_size=64, workers=4)   # a PyTorch Dataset, a list of dicts...
    for images, labels in loader:                            # batches in the dataset's own structure
        ...

:func:`adapt` runs where a dataset enters (the Loader's constructor): our own
sources (the :class:`~feedstock.protocols.Source` protocol) pass through; any
other object with random access is wrapped in a :class:`DatasetSource` whose
layout comes from record 0 (:mod:`.record_layout`) and is checked on every
record: a record whose structure, field, shape or dtype differs is an error
naming its index, the field and both shapes (skipped and reported under
``on_error="skip"``). An iterable-only dataset is refused: feedstock makes batch
k of epoch e from the indices (seed, e, k) give, which is what makes batches
the same for any worker count and lets a run resume mid-epoch.

Workers. A worker seeds Python's ``random``, numpy's global generator and (when
imported) torch's from (seed, worker id), as torch's DataLoader does, so workers
do not repeat each other's draws; then it calls ``worker_init(worker_id)``.
A dataset that draws from those global generators gives batches that depend on
the worker count; draws from an rng keyed on the index do not.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import re
import sys
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import protocols
from ..protocols import Indices
from ..spec import Sample, Spec
from .base import Source
from .record_layout import Layout, kind_of

Restore = Callable[[Mapping[str, object]], object]  # a dict batch -> the dataset's own structure
SMALL_RECORD = 16 << 10  # bytes: smaller records are gathered per field and written by one call per batch
_WORKER_NAME = re.compile(r"-worker-(\d+)$")  # ProcessPool names its processes "<name>-worker-<id>"


def as_source(dataset: Any, *, seed: int = 0, worker_init: Optional[Callable[[int], object]] = None) -> protocols.Source:
    """``dataset`` itself when it is a Source, else a :class:`DatasetSource` over it."""
    return adapt(dataset, seed=seed, worker_init=worker_init)[0]


def adapt(dataset: Any, *, seed: int = 0, worker_init: Optional[Callable[[int], object]] = None
          ) -> Tuple[protocols.Source, Optional[Restore]]:
    """(source, restore): ``restore(batch)`` gives a dict batch the dataset's structure (None: dicts already)."""
    if isinstance(dataset, protocols.Source):
        return dataset, None
    check_random_access(dataset)
    source = DatasetSource(dataset, seed=seed, worker_init=worker_init)
    return source, (None if source.layout.identity else source.layout.rebuild)


def check_random_access(dataset: object) -> None:
    """TypeError, in one line, for what cannot be a map-style dataset (iterable-only, a mapping, empty)."""
    name = type(dataset).__name__
    iterable_only = any(c.__name__ == "IterableDataset" and c.__module__.startswith("torch.utils.data")
                        for c in type(dataset).__mro__)
    if iterable_only or not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"{name} is not a map-style dataset: feedstock needs random access (__len__ and "
                        "__getitem__(i)) because batches are made from indices, which keeps them the same for any "
                        "worker count and lets a run resume mid-epoch; give a dataset with __getitem__ (or a list)")
    if isinstance(dataset, Mapping):
        raise TypeError(f"{name} is a mapping: a dataset is indexed by position 0..len-1; pass list(d.values())")
    if len(dataset) == 0:
        raise ValueError(f"{name} is empty: a dataset needs at least one record")


class DatasetSource(Source):
    """A Source over a user's map-style dataset; ``source[i]`` is record i as ``{name: array}``, checked.

    ``key(i)`` is the dataset's own ``key(i)`` when it has one, else ``str(i)``.
    Picklable when the dataset is (spawn pickles it; fork shares it copy-on-write).
    ``read_batch`` fills batch rows straight from ``dataset[i]`` (the Loader's fast path).
    """

    def __init__(self, dataset: Any, *, seed: int = 0, worker_init: Optional[Callable[[int], object]] = None):
        self.dataset, self.seed, self.worker_init = dataset, int(seed), worker_init
        self._length = len(dataset)
        try:
            first = dataset[0]
        except Exception as exc:
            raise ValueError(f"{type(dataset).__name__}[0] failed, so the record layout is unknown: "
                             f"{type(exc).__name__}: {exc}") from exc
        try:
            self.layout = Layout.of(first)
        except TypeError as exc:
            raise TypeError(f"{type(dataset).__name__}[0]: {exc}") from None
        self._keyed = callable(getattr(dataset, "key", None))
        self._started_in = os.getpid()  # the process whose workers get the per-worker set-up

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, i: int) -> Sample:
        i = self._check_index(i)
        return self.layout.fields(self.dataset[i], i)

    def key(self, i: int) -> str:
        return str(self.dataset.key(i)) if self._keyed else str(int(i))

    def spec(self) -> Spec:
        return dict(self.layout.spec)

    def read_batch(self, indices: Indices, out: Optional[Mapping[str, np.ndarray]] = None) -> Sample:
        """Records ``indices`` stacked per field, or written into ``out``'s rows (same dtype, checked per record)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -self._length or idx.max() >= self._length):
            raise IndexError(f"indices outside [0, {self._length}) for {self!r}")
        idx = np.where(idx < 0, idx + self._length, idx).tolist()
        rows = self._rows(idx)
        if out is None:
            columns = list(zip(*rows))
            return {n: np.array(c) if not s.shape else np.stack(c)
                    for (n, s), c in zip(self.layout.spec.items(), columns)}
        dsts = [out.get(name) for name in self.layout.names]
        if self._record_bytes >= SMALL_RECORD:  # straight into the rows: no batch of records held in between
            for j, row in enumerate(rows):
                for dst, v in zip(dsts, row):
                    if dst is not None:
                        dst[j] = v
            return dict(out)
        for (_, shape, _, _), dst, column in zip(self.layout.checks, dsts, zip(*rows)):
            if dst is not None:
                write_column(list(column), dst, shape)
        return dict(out)

    @property
    def _record_bytes(self) -> int:
        return sum(s.nbytes for s in self.layout.spec.values())

    def _rows(self, idx: List[int]) -> Iterator[Sequence[Any]]:
        """The values of records ``idx``, in field order: arrays equal in shape and dtype to record 0's and numbers
        of record 0's Python type as they are (exact); anything else through ``fields()``, which converts it or
        raises the error naming the record (the per-record check, inlined: it runs once per record)."""
        values, fields, dataset, checks = self.layout.values, self.layout.fields, self.dataset, self.layout.checks
        for i in idx:
            record = dataset[i]
            row = values(record, i)
            for (_, shape, dtype, pytype), v in zip(checks, row):
                t = type(v)
                if not ((t is np.ndarray and v.shape == shape and v.dtype == dtype) or t is pytype):
                    row = list(fields(record, i).values())
                    break
            yield row

    def __getstate__(self) -> Dict[str, object]:
        return self.__dict__.copy()

    def __setstate__(self, state: Dict[str, object]) -> None:
        super().__setstate__(state)
        wid = _worker_id()
        if wid is not None and self._started_in != os.getpid():
            self._started_in = os.getpid()  # once per process (spawn unpickles, then the plan copies)
            seed_globals(self.seed, wid)
            if self.worker_init is not None:
                self.worker_init(wid)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={s.dtype}{list(s.shape)}" for n, s in self.layout.spec.items())
        return f"DatasetSource({type(self.dataset).__name__}, {self._length} {self.layout.kind} records: {fields})"


def write_column(column: List[Any], dst: np.ndarray, shape: Tuple[int, ...]) -> None:
    """Rows of one field (equal shapes and dtypes, or numbers of the batch dtype's kind) into ``dst``."""
    if shape and shape[0] and dst.flags.c_contiguous:
        # one C call for the whole column (a row at a time costs ~5x as much for small records)
        np.concatenate(column, axis=0, out=dst.reshape(-1, *shape[1:]))
    elif shape:
        for j, v in enumerate(column):
            dst[j] = v
    else:
        dst[...] = column


def _worker_id() -> Optional[int]:
    """This process's worker id when it is a feedstock pool worker, else None."""
    match = _WORKER_NAME.search(multiprocessing.current_process().name)
    return int(match.group(1)) if match else None


def seed_globals(seed: int, wid: int) -> None:
    """Seed ``random``, numpy's global generator and torch's (if imported) from (seed, worker id)."""
    state = np.random.SeedSequence([seed, wid]).generate_state(2)
    random.seed(int(state[0]))
    np.random.seed(int(state[1]))
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "manual_seed"):
        torch.manual_seed(int(state[0]))


__all__ = ["adapt", "as_source", "check_random_access", "DatasetSource", "kind_of"]
