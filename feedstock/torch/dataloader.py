"""``feedstock.torch.DataLoader``: torch's DataLoader signature over feedstock's Loader.

::

    from feedstock.torch import DataLoader            # was: from torch.utils.data import DataLoader
    loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=4)
    for images, labels in loader: ...

docs/architecture.md ("feedstock.torch.DataLoader") has the rest of the design.
"""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from ..loaders.dataset import DatasetSource, as_source
from ..loaders.record_layout import Layout
from ..pipeline.loader import Loader
from . import options
from .cuda import PinnedSlots, SideStream

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

    from torch import Generator, Tensor
    from torch import device as Device
    from torch.cuda import Event
    from torch.utils.data import Sampler

    from ..protocols import Transform

Tensors = Dict[str, "Tensor"]
Transforms = Union["Transform", Sequence["Transform"], None]


def need_torch() -> ModuleType:
    try:
        import torch
    except ImportError as exc:  # an optional extra
        raise ImportError("feedstock.torch needs PyTorch: pip install 'feedstock[torch]'") from exc
    return torch


class DataLoader:
    """A drop-in for ``torch.utils.data.DataLoader`` over feedstock's worker pool; see the module doc."""

    def __init__(self, dataset: Any, batch_size: Optional[int] = 1, shuffle: Optional[bool] = None,
                 sampler: Optional[Sampler] = None, batch_sampler: object = None, num_workers: int = 0,
                 collate_fn: Optional[Callable[[list], object]] = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn: Optional[Callable[[int], object]] = None,
                 multiprocessing_context: Union[str, BaseContext, None] = None,
                 generator: Optional[Generator] = None, *, prefetch_factor: Optional[int] = None,
                 persistent_workers: bool = False, pin_memory_device: str = "", in_order: bool = True,
                 seed: Optional[int] = None, rank: Optional[int] = None, world_size: Optional[int] = None,
                 device: Union[str, int, Device, None] = None,
                 transforms: Transforms = None, on_error: str = "raise", copy: bool = False):
        torch = self._torch = need_torch()
        if batch_size is None:
            raise ValueError("batch_size=None (no batching) is not supported: feedstock fills whole batches")
        if pin_memory_device:
            raise ValueError("pin_memory_device is deprecated in torch; use device='cuda' for copies to the GPU")
        order = options.resolve_order(torch, dataset, shuffle=shuffle, sampler=sampler, batch_sampler=batch_sampler,
                                      generator=generator, seed=seed, rank=rank, world_size=world_size)
        self.dataset, self.batch_size, self.drop_last = dataset, int(batch_size), bool(drop_last)
        self.num_workers, self.persistent_workers = int(num_workers), bool(persistent_workers)
        self.collate_fn = None if collate_fn is torch.utils.data.default_collate else collate_fn
        self._distributed = order.distributed
        source = as_source(dataset, seed=order.seed, worker_init=worker_init_fn)
        self._layout: Optional[Layout] = source.layout if isinstance(source, DatasetSource) else None
        self.loader = Loader(source, transforms, batch_size=self.batch_size, workers=self.num_workers,
                             shuffle=order.shuffle, seed=order.seed, drop_last=self.drop_last,
                             prefetch=options.slots(self.num_workers, prefetch_factor,
                                                    batch_bytes(source, transforms, self.batch_size)),
                             on_error=on_error,
                             shard=(order.rank, order.world_size),
                             timeout=options.worker_timeout(timeout), copy=copy,
                             start_method=options.start_method(multiprocessing_context))
        cuda = bool(torch.cuda.is_available())
        if device is not None and torch.device(device).type == "cuda" and not cuda:
            raise ValueError(f"device={device!r}: CUDA is not available here (torch {torch.__version__})")
        gpu = device is not None and torch.device(device).type == "cuda"
        self._pinned = PinnedSlots(torch) if cuda and (pin_memory or gpu) else None
        self._copier = SideStream(torch, device) if gpu and device is not None else None
        self._delivered: Optional[Tuple[int, int]] = None  # (epoch, next batch) as the caller has seen it
        self._positioned = False  # load_state_dict/set_epoch placed the next pass

    # ----- iteration ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:  # Any as torch's: the dataset's own record structure
        loader = self.loader
        if self._delivered is not None and not self._positioned:
            # the last pass was left unfinished: as in torch, a new iter() is a new pass (the next epoch);
            # after load_state_dict/set_epoch it starts where they put it
            loader.set_epoch(self._delivered[0] + 1)
        self._positioned, self._delivered = False, None
        if self._distributed is not None and self._position()[1] == 0:
            loader.set_epoch(int(self._distributed.epoch))  # as DistributedSampler.set_epoch orders
        epoch, k = self._position()
        batches = self._host_batches()
        if self._copier is not None:
            batches = self._on_device(batches)
        for batch in batches:
            k += 1
            self._delivered = (epoch, k)
            yield batch
        self._delivered = None
        if not self.persistent_workers:
            self.close()  # as torch: workers live for one pass

    def _position(self) -> Tuple[int, int]:
        state = self.loader.state_dict()
        return state["epoch"], state["next_batch"]

    def _host_batches(self) -> Iterator[Any]:
        from_numpy = self._torch.from_numpy
        first = True
        for batch in self.loader:
            if first and self._pinned is not None:
                self._pinned.register(self.loader.slot_arrays())  # once per set of slots
            first = False
            tensors = {name: from_numpy(a) for name, a in batch.items()}
            yield tensors if self._copier is not None else self._collate(tensors)

    def _on_device(self, batches: Iterator[Tensors]) -> Iterator[Any]:
        """Batch k+1 is copied on the side stream while batch k is used; a slot is given back to the
        workers (by asking for the next batch) only once its copy is done."""
        copier = self._copier
        assert copier is not None
        current = None
        for host in batches:
            issued = copier.issue(host)
            if current is not None:
                yield self._handed(*current)
            current = issued
            current[1].synchronize()  # this slot's copy is done before the next batch frees it
        if current is not None:
            yield self._handed(*current)

    def _handed(self, tensors: Tensors, done: Event) -> Any:
        assert self._copier is not None
        self._copier.hand_over(tensors, done)
        return self._collate(tensors)

    def _collate(self, tensors: Tensors) -> Any:
        """The default collate's structure (see the module doc), or a custom ``collate_fn`` over the samples."""
        if self.collate_fn is not None:
            return self.collate_fn(samples(self._layout, tensors))
        return default_structure(self._layout, tensors)

    # ----- position ----------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, int]:
        """Where the next batch the caller gets comes from (a batch fetched ahead for the GPU does not count)."""
        state = dict(self.loader.state_dict())
        if self._delivered is not None:
            state["epoch"], state["next_batch"] = self._delivered
        return state

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """The next ``iter()`` continues exactly with the batch that came next when ``state`` was taken."""
        self.loader.load_state_dict(state)
        self._positioned, self._delivered = True, None

    def set_epoch(self, epoch: int) -> None:
        """The next ``iter()`` starts at batch 0 of ``epoch``."""
        self.loader.set_epoch(epoch)
        self._positioned, self._delivered = True, None

    # ----- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._pinned is not None:
            if self._copier is not None:
                self._torch.cuda.synchronize()
            self._pinned.close()  # before the slots are unmapped
        self.loader.close()

    def __enter__(self) -> "DataLoader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> Dict[str, float]:
        return self.loader.stats()

    def report(self) -> Dict[str, object]:
        return self.loader.report()

    def __repr__(self) -> str:
        return f"feedstock.torch.DataLoader({self.loader!r})"


def batch_bytes(source: object, transforms: Transforms, batch_size: int) -> Optional[int]:
    """Bytes of one batch when the source declares fixed shapes and no transform changes them, else None."""
    if transforms or not isinstance(source, DatasetSource):
        return None
    return sum(s.nbytes for s in source.spec().values()) * batch_size


def default_structure(layout: Optional[Layout], tensors: Tensors) -> Any:
    """What ``default_collate`` makes of records in ``layout`` (a tuple record gives a list, as in torch)."""
    if layout is None:
        return tensors  # one of our own Sources: dicts
    if layout.kind == "tuple":
        return [tensors[n] for n in layout.names]
    return layout.rebuild(tensors)


def samples(layout: Optional[Layout], tensors: Tensors) -> List[object]:
    """Each batch row as a sample in the dataset's structure (views of the batch's tensors)."""
    rows = len(next(iter(tensors.values())))
    rebuild = layout.rebuild if layout is not None else dict
    return [rebuild({n: t[j] for n, t in tensors.items()}) for j in range(rows)]


__all__: Sequence[str] = ["DataLoader", "default_structure", "samples", "need_torch"]
