"""The declared seams between sources, transforms, the pipeline and trainers (typing.Protocol).

The pipeline asks what a part can do with ``isinstance`` against these protocols
(those marked runtime-checkable), never by probing attributes:

* :class:`Source` and its one optional batched read, :class:`BatchReadable`;
* :class:`Transform`, its optional batch form, :class:`BatchTransform`, and its
  optional fused write into a batch row, :class:`FusedTransform`;
* :class:`BatchLoader`: what the local Loader and the RemoteLoader share;
* :class:`TaskPool`: the worker pool (ProcessPool) and its in-process twin (InlinePool).
"""
from __future__ import annotations

from types import NotImplementedType
from typing import Dict, Iterator, List, Mapping, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np

from .spec import Sample, Spec

Batch = Dict[str, np.ndarray]
Indices = Union[Sequence[int], np.ndarray]  # dataset indices of a batched read


@runtime_checkable
class Source(Protocol):
    """Random access to records: ``source[i]`` is ``{field: array}``; ``key(i)`` names record i in errors.

    Picklable; handles (LMDB env, HDF5 file) open lazily in the reading process.
    ``spec()`` gives each field's per-record shape and dtype (``None`` dims where
    only decoding tells).
    """

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Sample: ...

    def key(self, i: int) -> str: ...

    def spec(self) -> Spec: ...


@runtime_checkable
class BatchReadable(Protocol):
    """A source's vectorised read: records ``indices`` stacked per field, equal to ``np.stack`` of ``self[i]``.

    With ``out`` (arrays of ``len(indices)`` rows per field, e.g. rows of a batch
    slot) the rows are written there, never cast unsafely, and ``out`` is returned.
    ``NotImplemented`` means these records cannot be stacked (encoded images,
    shapes or dtypes that differ): the caller reads them one by one. A record that
    cannot be read raises an error naming its key.
    """

    def read_batch(self, indices: Indices, out: Optional[Mapping[str, np.ndarray]] = None
                   ) -> Union[Sample, NotImplementedType]: ...


@runtime_checkable
class Transform(Protocol):
    """``(sample, rng) -> sample`` with randomness from ``rng`` only, plus the output spec for an input spec."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample: ...

    def output_spec(self, spec: Spec) -> Spec: ...


@runtime_checkable
class FusedTransform(Protocol):
    """A transform that writes its result straight into a caller's row (``out``: field -> row view)."""

    def into(self, sample: Sample, rng: np.random.Generator, out: Mapping[str, np.ndarray]) -> None: ...


@runtime_checkable
class BatchTransform(Protocol):
    """A transform's batch form: deterministic and row-wise on stacked fields (N, ...).

    Equal to applying the transform row by row; ``NotImplemented`` when its
    settings draw random numbers (then rows go one by one, with per-sample rngs).
    """

    def apply_batch(self, fields: Mapping[str, np.ndarray]) -> Union[Sample, NotImplementedType]: ...


@runtime_checkable
class BatchLoader(Protocol):
    """What a trainer needs of a loader: the local Loader and the RemoteLoader both are one.

    ``iter()`` yields one epoch's batches from the current position; the state is
    a few integers (seed, epoch, next batch, setup checks). ``slot_arrays()`` are
    the arrays batches are views of (to register with a GPU once), [] if none.
    """

    def __iter__(self) -> Iterator[Batch]: ...

    def __len__(self) -> int: ...

    def state_dict(self) -> Dict[str, int]: ...

    def load_state_dict(self, state: Mapping[str, int]) -> None: ...

    def stats(self) -> Dict[str, float]: ...

    def slot_arrays(self) -> List[Dict[str, np.ndarray]]: ...

    def close(self) -> None: ...


@runtime_checkable
class TaskPool(Protocol):
    """Runs small task payloads in workers; results come back by task id (ProcessPool, InlinePool)."""

    restarts: int

    @property
    def pids(self) -> List[int]: ...

    @property
    def outstanding(self) -> int: ...

    def submit(self, payload: object) -> int: ...

    def results(self, timeout: Optional[float] = None) -> List[Tuple[int, object]]: ...

    def drain(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class DecodeTimed(Protocol):
    """A source that counts the seconds it spent decoding in this process (reported apart from reading)."""

    decode_s: float
