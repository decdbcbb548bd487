"""Page-locked slots (registered once with cudaHostRegister) and batch copies on a side stream (torch.cuda).

Only used where ``torch.cuda.is_available()``; the DataLoader skips it otherwise.
"""
from __future__ import annotations

import logging
from types import ModuleType
from typing import TYPE_CHECKING, Dict, Iterable, Mapping, Tuple, Union

import numpy as np

from ..device import page_ranges

if TYPE_CHECKING:
    from torch import Tensor
    from torch import device as Device
    from torch.cuda import Event

log = logging.getLogger(__name__)


class PinnedSlots:
    """Registers the Loader's slot memory as page-locked once; tensors made on it are pinned, no copy."""

    def __init__(self, torch: ModuleType):
        self.cudart = torch.cuda.cudart()
        self.registered: Dict[int, int] = {}  # address -> bytes

    def register(self, slots: Iterable[Mapping[str, np.ndarray]]) -> int:
        """Register the slots not registered yet (a restarted Loader makes new ones); returns the bytes added."""
        added = 0
        for ptr, size in page_ranges(a for slot in slots for a in slot.values()):
            if ptr in self.registered:
                continue
            err = self.cudart.cudaHostRegister(ptr, size, 0)  # cudaHostRegisterDefault
            if int(err) != 0:
                raise RuntimeError(f"cudaHostRegister of {size} bytes of slot memory failed: {err}")
            self.registered[ptr] = size
            added += size
        return added

    def close(self) -> None:
        """Unregister (before the Loader unmaps its slots)."""
        for ptr in list(self.registered):
            del self.registered[ptr]
            err = self.cudart.cudaHostUnregister(ptr)
            if int(err) != 0:
                log.warning("cudaHostUnregister of slot memory at 0x%x failed: %s", ptr, err)


class SideStream:
    """Copies a batch's tensors to ``device`` on its own stream; the consumer's stream waits for them."""

    def __init__(self, torch: ModuleType, device: Union[str, int, Device]):
        self.torch, self.device = torch, torch.device(device)
        self.stream = torch.cuda.Stream(device=self.device)

    def issue(self, host: Mapping[str, Tensor]) -> Tuple[Dict[str, Tensor], Event]:
        """Start the copies (asynchronous from pinned memory); the event marks their end."""
        torch = self.torch
        with torch.cuda.stream(self.stream):
            out = {name: t.to(self.device, non_blocking=True) for name, t in host.items()}
            done = torch.cuda.Event()
            done.record(self.stream)
        return out, done

    def hand_over(self, tensors: Mapping[str, Tensor], done: Event) -> None:
        """Make the current stream wait for the copies, and keep their memory alive for it."""
        current = self.torch.cuda.current_stream(self.device)
        current.wait_event(done)
        for t in tensors.values():
            t.record_stream(current)  # allocated on the side stream, used on the current one
