"""The Ray side of the ray engine: an actor that holds the source open and makes whole batches.

A batch is a pure function of (source, transforms, seed, epoch, batch index), so
the actor runs the local pipeline's own code: the Sampler gives the indices,
:class:`~feedstock.pipeline.fill.Filler` reads, transforms with the per-sample
rngs of :mod:`feedstock.rng` and writes the rows (the batch fast path included)
into a process-private slot, and the slot's arrays are returned: Ray puts them in
its object store once, and the consumer on the same node maps them without a copy.

The actor keeps the source open between calls (an LMDB environment, an HDF5
file), which a stateless task would reopen every time. Errors travel as data
(:class:`~feedstock.pipeline.worker.ErrorInfo`): the loader raises one when its
batch is due, as the local Loader does. ``check()`` reads record 0 once, so a
node that cannot read the source is named with the path at start.
"""
from __future__ import annotations

import os
import socket
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..pipeline.fill import Filler, FillPlan, FillResult, record_key
from ..pipeline.sampler import Sampler
from ..pipeline.shm import SlotLayout, SlotRing
from ..pipeline.worker import ErrorInfo, limit_threads
from ..protocols import Source
from ..transforms.base import Compose

Chunk = Tuple[int, int, int]  # epoch, batch k, rows
# (epoch, k, arrays or None, fill result, error or None): one per batch of a call
Made = Tuple[int, int, Optional[Dict[str, np.ndarray]], FillResult, Optional[ErrorInfo]]
NO_FILL: FillResult = (0.0, 0.0, 0.0, ())


def node_name() -> str:
    """This host's name and IP, the way a user finds a node again."""
    host = socket.gethostname()
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        ip = "?"
    return f"{host} ({ip})"


def ray_node_id() -> str:
    """The Ray node this process runs on ("" outside Ray)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


class BatchMaker:
    """Made into a Ray actor by :mod:`.ray_pool` (``ray.remote(BatchMaker)``); plain Python otherwise."""

    def __init__(self, source: Source, compose: Compose, sampler: Sampler, layout: SlotLayout, skip: bool):
        limit_threads()  # one actor per CPU: nested thread pools would only oversubscribe the node
        self.source, self.compose, self.layout, self.skip = source, compose, layout, skip
        self.sampler = sampler
        self.node_id = ray_node_id()
        self._filler: Optional[Filler] = None
        self._slots = 0

    def check(self) -> Tuple[str, str]:
        """``(node id, error)``: error is "" when record 0 reads here, else one line naming node and path."""
        try:
            self.source[0]
        except Exception as exc:  # noqa: BLE001 (any failure to read is the message)
            return self.node_id, (f"node {node_name()} cannot read the source at {record_key(self.source, 0)}: "
                                  f"{type(exc).__name__}: {exc} (every Ray node must see the data at the same "
                                  "path)")
        return self.node_id, ""

    def pid(self) -> int:
        return os.getpid()

    def _filler_for(self, seed: int, count: int) -> Filler:
        if seed != self.sampler.seed:  # load_state_dict moved to another seed
            self.sampler, self._filler = self.sampler.replace(seed=seed), None
        if self._filler is None or self._slots < count:
            plan = FillPlan(self.source, self.compose, self.sampler, self.layout, skip=self.skip)
            self._slots = max(count, self._slots)
            self._filler = Filler(plan, SlotRing.local(self.layout, self._slots), 0, self.source)
        return self._filler

    def make(self, seed: int, chunks: Sequence[Chunk]) -> Tuple[str, List[Made]]:
        """The batches ``chunks`` of the stream with ``seed``, in order; returns them with this node's id."""
        filler = self._filler_for(seed, len(chunks))
        out: List[Made] = []
        for slot, (epoch, k, rows) in enumerate(chunks):
            try:
                result = filler.fill((epoch, k, slot, 0, rows, 0))
            except Exception as exc:  # noqa: BLE001 (raised in the consumer when the batch is due)
                out.append((epoch, k, None, NO_FILL, ErrorInfo.of(exc)))
                continue
            views = filler.ring.slots[slot]
            # the views are serialised into the object store when this call returns, before the next reuses them
            out.append((epoch, k, {name: v[:rows] for name, v in views.items()}, result, None))
        return self.node_id, out
