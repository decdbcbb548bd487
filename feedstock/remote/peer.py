"""What the client knows of one server: sockets, meta, receive buffers, session position, health."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np
import zmq

Pos = Tuple[int, int]  # (epoch, local batch)


@dataclass
class Ready:
    epoch: int
    batch: int
    slot: int  # the receive buffer (with zero_copy: only a credit)
    rows: int
    frames: Optional[List[zmq.Frame]] = None  # zero_copy: ZeroMQ's own frames, one per field


@dataclass
class Peer:
    """One server: its sockets, what it serves and where its session stands."""

    endpoint: str
    sock: Any = None
    monitor: Any = None
    meta: Optional[Dict[str, Any]] = None
    buffers: List[Dict[str, np.ndarray]] = field(default_factory=list)
    free: List[int] = field(default_factory=list)
    ready: Deque[Ready] = field(default_factory=collections.deque)
    session: int = 0
    seed: int = 0
    want: Optional[Pos] = None  # the next batch the session should bring (None: no session wanted)
    connected: bool = False
    lost_at: Optional[float] = None
    hello_at: float = 0.0
    busy_since: Optional[float] = None  # when the server first said another client holds it
    error: Optional[BaseException] = None
    reconnects: int = 0
    received: int = 0
    bytes: int = 0

    @property
    def info(self) -> Dict[str, Any]:
        """The server's meta: set once its setup reply arrived (the client waits for that first)."""
        if self.meta is None:
            raise RuntimeError(f"{self.endpoint}: no setup reply from this server yet")
        return self.meta

    @property
    def name(self) -> str:
        part = f" (part {self.meta['part'][0]}/{self.meta['part'][1]})" if self.meta else ""
        return self.endpoint + part

    def next_pos(self, pos: Pos) -> Pos:
        epoch, k = pos
        return (epoch, k + 1) if k + 1 < self.info["num_batches"] else (epoch + 1, 0)
