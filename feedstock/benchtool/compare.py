"""``--compare torch``: torch's DataLoader over the same source and transforms, timed like the Loader.

A user's own dataset (``bench --dataset``, adapted by :mod:`feedstock.loaders.dataset`)
with no transforms is given to torch's DataLoader as it is, with its default
collate: the comparison is with what the user runs today.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Sized

import numpy as np

from ..loaders.dataset import DatasetSource
from ..protocols import Source
from ..rng import sample_rng
from ..transforms.base import Compose
from .sweep import Tick, steady_batches

if TYPE_CHECKING:
    from torch import Generator


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class SourceDataset:
    """A map-style torch Dataset: ``source[i]`` through the transforms with the Loader's per-sample rng."""

    def __init__(self, source: Source, compose: Compose, seed: int):
        self.source, self.compose, self.seed = source, compose, seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        sample = self.compose(self.source[i], sample_rng(self.seed, 0, i))
        return {k: np.ascontiguousarray(v) for k, v in sample.items()}


class AsDicts:
    """Re-iterable: each batch of ``loader`` as ``{"0": its first tensor}`` (what the timing loop counts rows of)."""

    def __init__(self, loader: Iterable[object]):
        self.loader = loader

    def __iter__(self) -> Iterator[Mapping[str, Sized]]:
        for batch in self.loader:
            yield batch if isinstance(batch, Mapping) else {"0": _first(batch)}


def _first(batch: Any) -> Any:
    while isinstance(batch, (list, tuple)):
        batch = batch[0]
    return batch


def torch_dataset(source: Source, compose: Compose, seed: int) -> object:
    """What torch's DataLoader reads: a user's own dataset as it is, else the source through the transforms."""
    if isinstance(source, DatasetSource) and not compose.transforms:
        return source.dataset
    return SourceDataset(source, compose, seed)


def torch_rate(source: Source, compose: Compose, workers: int, *, batch_size: int, seconds: float, seed: int = 0,
               tick: Optional[Tick] = None) -> float:
    """Samples/s of ``torch.utils.data.DataLoader`` after its first batch, for about ``seconds``."""
    import torch.utils.data as tud

    dataset: Any = torch_dataset(source, compose, seed)
    loader = tud.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                            num_workers=workers, drop_last=True, pin_memory=False,
                            generator=_torch_generator(seed), persistent_workers=workers > 0,
                            multiprocessing_context="fork" if workers else None)
    steady = steady_batches(AsDicts(loader), seconds, tick=tick)
    del loader  # persistent workers stop with the iterator
    return steady.samples / steady.elapsed_s


def _torch_generator(seed: int) -> Generator:
    import torch

    g = torch.Generator()
    g.manual_seed(seed)
    return g


def compare_torch(source: Source, compose: Compose, counts: Sequence[int], *, batch_size: int, seconds: float,
                  seed: int = 0, tick: Optional[Tick] = None) -> Dict[int, float]:
    """Torch DataLoader samples/s by worker count; ImportError naming the extra when torch is absent."""
    if not have_torch():
        raise ImportError("--compare torch needs PyTorch: pip install 'feedstock[torch]'")
    return {n: torch_rate(source, compose, n, batch_size=batch_size, seconds=seconds, seed=seed, tick=tick)
            for n in counts}
