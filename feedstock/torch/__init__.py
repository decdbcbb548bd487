"""feedstock for PyTorch: ``DataLoader`` (torch's signature, feedstock's workers) and ``wrap(loader)`` (zero-copy tensors).

::

    from feedstock.torch import DataLoader            # instead of torch.utils.data.DataLoader
    for images, labels in DataLoader(dataset, batch_size=64, shuffle=True, num_workers=4): ...

    for batch in feedstock.torch.wrap(Loader(source, ...)): ...   # dict batches of tensors on the slots
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, Protocol

from ..protocols import BatchLoader
from .dataloader import DataLoader, need_torch

if TYPE_CHECKING:
    from torch import Tensor

_torch = need_torch


class WrappedLoader(BatchLoader, Protocol):
    """What ``wrap`` takes: a Loader, RemoteLoader or RayLoader (a batch loader that is a context manager)."""

    def __enter__(self) -> object: ...

    def __exit__(self, *exc: object) -> None: ...


class TorchLoader:
    """Iterates the wrapped loader, turning each numpy view into a tensor on the same memory.

    The tensors share the slot like the numpy views do: valid until the next batch
    (wrap a ``copy=True`` loader to keep them). Everything else (``len``,
    ``state_dict``, ``set_epoch``, ``stats``, ``close``...) is the loader's.
    """

    def __init__(self, loader: WrappedLoader):
        self.loader = loader
        self._torch = _torch()

    def __iter__(self) -> Iterator[Dict[str, Tensor]]:
        from_numpy = self._torch.from_numpy
        for batch in self.loader:
            yield {name: from_numpy(array) for name, array in batch.items()}

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __enter__(self) -> "TorchLoader":
        self.loader.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.loader.__exit__(*exc)


def wrap(loader: WrappedLoader) -> TorchLoader:
    """Zero-copy torch view of ``loader``'s batches (``torch.from_numpy``)."""
    return TorchLoader(loader)


__all__ = ["DataLoader", "TorchLoader", "wrap"]
