"""Batches for the trainer: in-memory array sources, an in-process reader, and the Loader glue."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..loaders.base import Source, as_label
from ..pipeline.sampler import Sampler
from ..spec import ArraySpec, Spec, merge_unknown, spec_of


class ArraySource(Source):
    """In-memory ``data`` (N, ...) and optional ``labels`` (N,) as a picklable Source."""

    def __init__(self, data: np.ndarray, labels: Optional[np.ndarray] = None, *, name: str = "array") -> None:
        self.data = np.asarray(data)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self.labels is not None and self.labels.shape != (len(self.data),):
            raise ValueError(f"labels shape {self.labels.shape} does not match {len(self.data)} records")
        self.name = name

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        i = self._check_index(i)
        out = {"data": self.data[i]}
        if self.labels is not None:
            out["label"] = as_label(self.labels[i])
        return out

    def key(self, i: int) -> str:
        return f"{self.name}[{self._check_index(i)}]"

    def spec(self) -> Spec:
        out = {"data": ArraySpec(self.data.shape[1:], self.data.dtype)}
        if self.labels is not None:
            out["label"] = ArraySpec((), np.int64)
        return out

    def get_batch(self, indices: np.ndarray) -> Dict[str, np.ndarray]:
        """Rows ``indices`` of every field at once (the Loader's vectorised fast path)."""
        out = {"data": self.data[indices]}
        if self.labels is not None:
            out["label"] = self.labels[indices]
        return out

    def take(self, indices: np.ndarray, out: Mapping[str, np.ndarray]) -> None:
        """Gather rows ``indices`` straight into ``out`` (one copy, no per-record dicts)."""
        np.take(self.data, indices, axis=0, out=out["data"])
        if "label" in out:
            np.take(self.labels, indices, axis=0, out=out["label"])


class Subset(Source):
    """Records ``indices`` of another source (a held-out split), in that order."""

    def __init__(self, source: Source, indices: Sequence[int]) -> None:
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

    def get_many(self, indices: Sequence[int]) -> List[Dict[str, np.ndarray]]:
        return self.source.get_many(self.indices[np.asarray(indices, dtype=np.int64)])


def holdout_split(source: Source, fraction: float, *, seed: int) -> Tuple[Subset, Subset]:
    """(train, held-out) subsets: a seeded random ``fraction`` of the records is held out."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout {fraction=} must be in (0, 1)")
    order = np.random.default_rng([seed, 0x484F4C44]).permutation(len(source))
    n_out = max(1, int(round(len(source) * fraction)))
    return Subset(source, np.sort(order[n_out:])), Subset(source, np.sort(order[:n_out]))


def as_source(obj: Any) -> Source:
    """A Source from a Source, an (images, labels) pair, a datasets.Split, or a path."""
    if isinstance(obj, Source):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return open_source(obj)
    if hasattr(obj, "images") and hasattr(obj, "labels"):
        return ArraySource(obj.images, obj.labels)
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return ArraySource(obj[0], obj[1])
    raise ValueError(f"cannot make a data source from {type(obj).__name__}")


def open_source(path: Any) -> Source:
    """CaffeLmdb for an LMDB directory (data.mdb inside), CsvTable for a .csv file."""
    p = Path(path)
    if p.is_dir() and (p / "data.mdb").exists():
        from ..loaders.caffe_lmdb import CaffeLmdb

        return CaffeLmdb(p)
    if p.suffix.lower() in (".csv", ".gz") and p.is_file():
        from ..loaders.csv_table import CsvTable

        return CsvTable(p)
    raise ValueError(f"{str(path)!r} is neither a Caffe LMDB directory nor a .csv file")


def fixed_spec(source: Source) -> Spec:
    """The source's spec with unknown dims filled from its first record."""
    declared = source.spec()
    if all(s.fixed for s in declared.values()):
        return declared
    return merge_unknown(declared, spec_of(source[0]))


class InProcessBatches:
    """``workers=0``: batch rows read in this process into one reused buffer.

    Follows the Loader's contract: a batch is a dict of views valid until the
    next one is requested; ``slot_arrays()`` names the buffer for registration.
    """

    def __init__(self, source: Source, *, batch_size: int, shuffle: bool, seed: int, drop_last: bool) -> None:
        self.source = source
        self.sampler = Sampler(len(source), batch_size=batch_size, shuffle=shuffle, seed=seed,
                               drop_last=drop_last)
        spec = fixed_spec(source)
        self._slot = {k: np.empty((batch_size,) + tuple(s.shape), s.dtype) for k, s in spec.items()}

    @property
    def num_batches(self) -> int:
        return len(self.sampler)

    def slot_arrays(self) -> List[Dict[str, np.ndarray]]:
        return [self._slot]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Dict[str, np.ndarray]]:
        """Batches ``start..`` of ``epoch`` in the Sampler's order."""
        for k in range(start, self.num_batches):
            idx = self.sampler.batch(epoch, k)
            out = {name: buf[:len(idx)] for name, buf in self._slot.items()}
            if isinstance(self.source, ArraySource):
                self.source.take(idx, out)
            else:
                for row, sample in enumerate(self.source.get_many(idx)):
                    for name, buf in out.items():
                        buf[row] = sample[name]
            yield out

    def close(self) -> None:
        pass


class LoaderBatches:
    """``workers>0``: feedstock's multi-process Loader, positioned explicitly for every epoch."""

    def __init__(self, source: Source, *, batch_size: int, shuffle: bool, seed: int, drop_last: bool,
                 workers: int, **loader_kwargs: Any) -> None:
        from ..pipeline.loader import Loader

        self.loader = Loader(source, None, batch_size=batch_size, workers=workers, shuffle=shuffle,
                             seed=seed, drop_last=drop_last, **loader_kwargs)

    @property
    def num_batches(self) -> int:
        return len(self.loader)

    def slot_arrays(self) -> List[Mapping[str, np.ndarray]]:
        """The loader's slot arrays once its ring exists; [] when it cannot tell (copies stay pageable)."""
        get = getattr(self.loader, "slot_arrays", None)
        return list(get()) if get is not None else []

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Mapping[str, np.ndarray]]:
        """Batches ``start..`` of ``epoch``: the same ones for any worker count and after a resume."""
        self.loader.load_state_dict(dict(self.loader.state_dict(), epoch=epoch, next_batch=start))
        return iter(self.loader)

    def close(self) -> None:
        self.loader.close()


def batch_stream(source: Source, *, batch_size: int, workers: int, shuffle: bool, seed: int,
                 drop_last: bool, **loader_kwargs: Any) -> Union[InProcessBatches, LoaderBatches]:
    """InProcessBatches for ``workers=0``, the multi-process Loader otherwise."""
    if batch_size <= 0:
        raise ValueError(f"{batch_size=} must be positive")
    if workers < 0:
        raise ValueError(f"{workers=} must be >= 0")
    if workers == 0:
        return InProcessBatches(source, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    return LoaderBatches(source, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                         workers=workers, **loader_kwargs)
