"""Memory per worker (PSS) and the slots' shared memory against what /dev/shm and RAM have free."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

from ..pipeline import machine
from .sweep import SweepPoint

MIB = 2**20


@dataclass(frozen=True)
class Memory:
    """What the workers and slots took in the sweep, and the room there is."""

    worker_pss: Optional[int]  # bytes per worker: the largest mean over the sweep's runs
    slot_bytes: int  # all slots of one Loader
    shm_free: Optional[int]  # /dev/shm bytes free (slots are not counted: the Loaders are closed)
    mem_available: Optional[int]

    def max_workers(self) -> Optional[int]:
        """Workers whose PSS plus the slots fit in 80% of MemAvailable; None when unknown."""
        from ..pipeline.auto import memory_cap

        if self.worker_pss is None:
            return None
        cap, _ = memory_cap(self.worker_pss, self.slot_bytes, self.mem_available, self.shm_free)
        return cap

    def slots_fit(self) -> bool:
        from ..pipeline.auto import SHM_SHARE

        return self.shm_free is None or self.slot_bytes <= SHM_SHARE * self.shm_free

    def line(self) -> str:
        pss = f"{self.worker_pss / MIB:.1f} MiB PSS per worker" if self.worker_pss else "worker PSS unknown"
        shm = f"{self.shm_free / MIB:,.0f} MiB free in /dev/shm" if self.shm_free is not None else "no /dev/shm"
        ram = f", {self.mem_available / MIB:,.0f} MiB available" if self.mem_available is not None else ""
        fit = "" if self.slots_fit() else "  (the slots do NOT fit: lower --prefetch or --batch-size)"
        return f"memory: {pss}; slots {self.slot_bytes / MIB:.1f} MiB of shared memory; {shm}{ram}{fit}"

    def to_dict(self) -> Dict[str, object]:
        return {"worker_pss_bytes": self.worker_pss, "slot_bytes": self.slot_bytes, "shm_free_bytes": self.shm_free,
                "mem_available_bytes": self.mem_available, "slots_fit": self.slots_fit(),
                "max_workers_by_memory": self.max_workers()}


def memory_of(points: Sequence[SweepPoint]) -> Memory:
    """Summarise the sweep's worker PSS and slot sizes with the machine's free memory now."""
    means = [sum(p.worker_pss) / len(p.worker_pss) for p in points if p.worker_pss and all(p.worker_pss)]
    slots = max((p.slot_bytes for p in points if p.workers > 0), default=0)
    return Memory(int(max(means)) if means else None, slots, machine.shm_free(), machine.mem_available())
