"""Batches for the trainer: sources from arrays or paths, held-out splits, and the Loader glue."""
from __future__ import annotations

import os
from types import NotImplementedType
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from ..loaders import ArraySource, open_source
from ..loaders.base import Source
from ..pipeline.fill import record_key
from ..protocols import BatchLoader, BatchReadable, Indices
from ..spec import Spec


class Subset(Source):
    """Records ``indices`` of another source (a held-out split), in that order."""

    def __init__(self, source: Source, indices: Indices) -> None:
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(source)):
            raise ValueError(f"subset indices out of range for a source of {len(source)} records")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        return self.source[int(self.indices[self._check_index(i)])]

    def key(self, i: int) -> str:
        return self.source.key(int(self.indices[self._check_index(i)]))

    def spec(self) -> Spec:
        return self.source.spec()

    def read_batch(self, indices: Indices, out: Optional[Mapping[str, np.ndarray]] = None
                   ) -> Union[Dict[str, np.ndarray], NotImplementedType]:
        """The source's batched read of the mapped records (NotImplemented when it has none)."""
        if not isinstance(self.source, BatchReadable):
            return NotImplemented
        return self.source.read_batch(self.indices[np.asarray(indices, dtype=np.int64)], out=out)


def holdout_split(source: Source, fraction: float, *, seed: int) -> Tuple[Subset, Subset]:
    """(train, held-out) subsets: a seeded random ``fraction`` of the records is held out."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout {fraction=} must be in (0, 1)")
    order = np.random.default_rng([seed, 0x484F4C44]).permutation(len(source))
    n_out = max(1, int(round(len(source) * fraction)))
    return Subset(source, np.sort(order[n_out:])), Subset(source, np.sort(order[:n_out]))


def labelled_arrays(images: np.ndarray, labels: np.ndarray) -> ArraySource:
    """In-memory images (N, C, H, W) with int64 class labels (N,) as a Source."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(images),):
        raise ValueError(f"labels shape {labels.shape} does not match {len(images)} images")
    return ArraySource(data=images, label=labels)


def as_source(obj: Any) -> Source:
    """A Source from a Source, an (images, labels) pair, a datasets.Split, or a path."""
    if isinstance(obj, Source):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return open_source(obj)
    if hasattr(obj, "images") and hasattr(obj, "labels"):
        return labelled_arrays(obj.images, obj.labels)
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return labelled_arrays(obj[0], obj[1])
    raise ValueError(f"cannot make a data source from {type(obj).__name__}")


class LoaderBatches:
    """A Loader (in-process for ``workers=0``) or a RemoteLoader, positioned explicitly for every epoch;
    closing the batches closes the loader."""

    def __init__(self, loader: BatchLoader) -> None:
        self.loader = loader

    @property
    def num_batches(self) -> int:
        return len(self.loader)

    def slot_arrays(self) -> List[Mapping[str, np.ndarray]]:
        """The loader's slot arrays once its ring exists; [] when it cannot tell (copies stay pageable)."""
        return list(self.loader.slot_arrays())

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Mapping[str, np.ndarray]]:
        """Batches ``start..`` of ``epoch``: the same ones for any worker count and after a resume."""
        self.loader.load_state_dict(dict(self.loader.state_dict(), epoch=epoch, next_batch=start))
        return _Epoch(self, iter(self.loader))

    def record_key(self, row: int) -> Optional[str]:
        """The key of ``row`` of the batch last yielded (a label check names the record); None for a
        loader that cannot tell (a RemoteLoader)."""
        sampler, source = getattr(self.loader, "sampler", None), getattr(self.loader, "source", None)
        if sampler is None or source is None:
            return None
        state = self.loader.state_dict()
        return record_key(source, int(sampler.batch(state["epoch"], state["next_batch"] - 1)[row]))

    def close(self) -> None:
        self.loader.close()


class _Epoch:
    """An epoch's batches that can name the record of a row of the batch last yielded."""

    def __init__(self, batches: LoaderBatches, it: Iterator[Mapping[str, np.ndarray]]) -> None:
        self.batches, self.it = batches, it

    def __iter__(self) -> "_Epoch":
        return self

    def __next__(self) -> Mapping[str, np.ndarray]:
        return next(self.it)

    def close(self) -> None:
        close = getattr(self.it, "close", None)
        if close is not None:
            close()

    def record_key(self, row: int) -> Optional[str]:
        return self.batches.record_key(row)


def is_loader(obj: Any) -> bool:
    """A ready loader (Loader, RemoteLoader) rather than something to make a source of."""
    return isinstance(obj, BatchLoader)


def loader_batches(loader: BatchLoader, *, batch_size: Optional[int], seed: Optional[int]) -> LoaderBatches:
    """A ready loader's batches for training: its batch size rules (a different ``batch_size`` is an
    error), and full ones where it says (a RemoteLoader: the servers must run with --drop-last, as the
    local training Loader drops the short batch); a given ``seed`` replaces its order's seed."""
    state = loader.state_dict()
    if batch_size is not None and state["batch_size"] != batch_size:
        raise ValueError(f"the loader serves batches of {state['batch_size']}, training asks for {batch_size}")
    if getattr(loader, "drop_last", True) is False:
        raise ValueError("training takes full batches: start the servers with --drop-last")
    if seed is not None and seed != state["seed"]:
        loader.load_state_dict(dict(state, seed=seed))
    return LoaderBatches(loader)


def source_batches(source: Source, *, batch_size: int, workers: int, shuffle: bool, seed: int,
                 drop_last: bool, **loader_kwargs: Any) -> LoaderBatches:
    """The Loader as the trainer reads it: ``epoch(e, start)`` iterators over its batches."""
    if batch_size <= 0:
        raise ValueError(f"{batch_size=} must be positive")
    if not isinstance(workers, str) and workers < 0:  # "auto": the Loader picks
        raise ValueError(f"{workers=} must be >= 0")
    from ..pipeline.loader import Loader

    return LoaderBatches(Loader(source, None, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                drop_last=drop_last, workers=workers, **loader_kwargs))
