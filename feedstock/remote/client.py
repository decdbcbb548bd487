"""RemoteLoader: batches from `feedstock serve` servers, interleaved into the batches a local Loader would give.

::

    # on CPU hosts a and b:  feedstock serve train_lmdb --batch-shard 0/2 ...   and   --batch-shard 1/2
    with RemoteLoader(["tcp://a:5555", "tcp://b:5555"]) as loader:
        for epoch in range(10):
            for batch in loader:        # dict field -> np.ndarray, one epoch
                train(batch)            # views into a receive buffer: valid until the next batch

Server ``j`` of ``n`` (``--batch-shard j/n``) serves batches j, j+n, ... of every
epoch; the client takes them in turn, so batch g of an epoch is the same array
data as the local Loader's batch g for the same source, transforms, seed and
shard, for any number of servers and whatever the timing.
``state_dict()`` is the local Loader's: a run resumes remotely from a local checkpoint and back.

Each server streams ahead into ``prefetch`` preallocated receive buffers of
its own, never more (credits); ``slot_arrays()`` lists them so a GPU feeder
can pin them once. ``zero_copy=True`` skips that copy: batches are views of
ZeroMQ's received frames (new memory each batch, nothing to pin; measured in
bench/bench_remote.py). A server that disconnects is waited for ``reconnect``
seconds and resumes where it stopped; after that, a server's error, or no batch
within ``timeout`` seconds, iteration raises (ServerLost / RemoteError naming the
server): the consumer never hangs.
"""
from __future__ import annotations

import time
import weakref
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from ..errors import RemoteError, RemoteSetupError, ServerLost
from ..pipeline.options import DEFAULTS, LoaderOptions, OptionError, as_timeout
from ..pipeline.state import LoaderState, check_epoch
from ..spec import ArraySpec
from . import protocol
from .link import Link, Pos
from .messages import MAX_CREDITS
from .security import CurveKey

Batch = Dict[str, np.ndarray]


class RemoteLoader:
    """The batches of the servers at ``endpoints`` as one deterministic sequence; see the module doc."""

    def __init__(self, endpoints: Sequence[str], *, seed: Optional[int] = None, prefetch: int = DEFAULTS.prefetch,
                 timeout: Optional[float] = DEFAULTS.timeout, connect_timeout: float = 30.0, reconnect: float = 30.0,
                 heartbeat: float = 1.0, copy: bool = False, zero_copy: bool = False,
                 curve_server_key: Optional[CurveKey] = None, curve_keys: Optional[str] = None):
        endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not endpoints:
            raise ValueError("endpoints: give at least one tcp://HOST:PORT of a `feedstock serve`")
        if len(set(endpoints)) != len(endpoints):
            raise ValueError(f"endpoints {endpoints} name a server twice")
        # the Loader's options by the Loader's rules; a seed left None is the servers'
        opts = LoaderOptions.from_kwargs(prefetch=prefetch, timeout=timeout, copy=copy,
                                         **({} if seed is None else {"seed": seed}))
        if not 2 <= opts.prefetch <= MAX_CREDITS:
            raise OptionError("prefetch", f"={opts.prefetch} must be in [2, {MAX_CREDITS}] (one buffer is the batch "
                                          "being consumed)")
        if opts.timeout is None:
            raise OptionError("timeout", "=None: a RemoteLoader needs a positive number of seconds")
        for name, value in (("connect_timeout", connect_timeout), ("reconnect", reconnect),
                            ("heartbeat", heartbeat)):
            as_timeout(name, value)
        self.prefetch, self.timeout, self.copy = opts.prefetch, opts.timeout, opts.copy
        self._link = Link(endpoints, heartbeat=heartbeat, reconnect=reconnect, zero_copy=bool(zero_copy),
                          curve_server_key=curve_server_key, curve_keys=curve_keys)
        self._finalizer = weakref.finalize(self, self._link.close)
        self._epoch, self._next = 0, 0
        self._batches_at: Optional[Pos] = None  # (epoch, global batch) the interleaved batches bring next
        self._held: Optional[tuple] = None  # (peer, slot) of the batch the consumer holds
        self._token = 0
        self._stats = {"batches": 0, "samples": 0, "bytes": 0, "wait_s": 0.0, "elapsed_s": 0.0}
        self._t_first: Optional[float] = None
        try:
            self._setup(endpoints, seed, connect_timeout)
        except BaseException:
            self.close()
            raise

    def _setup(self, endpoints: List[str], seed: Optional[int], connect_timeout: float) -> None:
        link = self._link
        deadline = time.monotonic() + connect_timeout
        with link.cond:
            while not all(p.meta is not None or p.error is not None for p in link.peers) and link.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    silent = [p.endpoint for p in link.peers if p.meta is None]
                    raise ServerLost(f"no answer from {', '.join(silent)} within {connect_timeout:g} s: is "
                                     "`feedstock serve` running there (and the CURVE key right)?")
                link.cond.wait(min(left, 0.5))
            for p in link.peers:
                if p.error is not None:
                    raise p.error
            if link.error is not None:
                raise link.error
            metas = [p.info for p in link.peers]
        order = protocol.check_metas(metas, endpoints)
        link.peers[:] = [link.peers[i] for i in order]  # by part: peer j serves batches j, j+n, ...
        meta = link.peers[0].info
        seeds = {p.info["seed"] for p in link.peers}
        if seed is None and len(seeds) > 1:
            raise RemoteSetupError(f"the servers run different seeds {sorted(seeds)}: pass seed= to choose one")
        self.seed = int(seed if seed is not None else seeds.pop())
        self.batch_size, self.length = int(meta["batch_size"]), int(meta["length"])
        self.world_size, self.rank = int(meta["world_size"]), int(meta["rank"])
        self.shuffle, self.drop_last = bool(meta["shuffle"]), bool(meta["drop_last"])
        self.num_batches = int(meta["rank_batches"])
        link.fields = fields = protocol.fields_of(meta)
        self.spec = {name: ArraySpec(shape, dtype) for name, shape, dtype in fields}
        for p in link.peers:  # only this thread touches buffers before the first start
            if not link.zero_copy:
                p.buffers = [{name: np.zeros((self.batch_size,) + shape, dtype) for name, shape, dtype in fields}
                             for _ in range(self.prefetch)]
            p.free = list(range(self.prefetch))

    # ----- position -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.num_batches

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Start the next pass at batch 0 of ``epoch``."""
        self._epoch, self._next = check_epoch(epoch), 0

    def state_dict(self) -> Dict[str, int]:
        """The local Loader's state for the same position: seed, epoch, next batch, setup checks."""
        return LoaderState(self.seed, self._epoch, self._next, self.batch_size, self.world_size,
                           self.length).to_dict()

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue with the batch that came next when ``state`` was taken (here or by a local Loader)."""
        st = LoaderState.from_dict(state)
        st.check(self)  # the servers' batch_size, world_size, length and batches per epoch
        self.seed = st.seed
        self._epoch, self._next = st.position(self.num_batches)

    def _positions(self, epoch: int, g: int) -> List[Pos]:
        """Where each server's batches start so that the interleaved batches start at global batch g."""
        n = len(self._link.peers)
        out = []
        for j, peer in enumerate(self._link.peers):
            k = max(0, -(-(g - j) // n))
            out.append((epoch, k) if k < peer.info["num_batches"] else (epoch + 1, 0))
        return out

    # ----- iteration -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Batch]:
        return self._iterate()

    def _iterate(self) -> Iterator[Batch]:
        if self._link.closing:
            raise RemoteError("this RemoteLoader is closed")
        self._token += 1
        token = self._token
        epoch, start = self._epoch, self._next
        if self._batches_at != (epoch, start):
            self._link.start(self._positions(epoch, start), self.seed)
            self._batches_at = (epoch, start)
        for g in range(start, self.num_batches):
            batch = self._take(epoch, g)
            self._next = g + 1
            self._batches_at = (epoch, g + 1) if g + 1 < self.num_batches else (epoch + 1, 0)
            yield batch
            if token != self._token:
                raise RuntimeError("this iterator is stale: the loader was closed or iterated again")
        self._epoch, self._next = epoch + 1, 0

    def _take(self, epoch: int, g: int) -> Batch:
        link = self._link
        j = g % len(link.peers)
        peer, k = link.peers[j], g // len(link.peers)
        self._release()
        t0 = time.perf_counter()
        if self._t_first is None:
            self._t_first = t0
        with link.cond:
            while True:
                if link.error is not None:
                    raise link.error
                if peer.ready:  # batches that arrived before a server's error or loss are good
                    ready = peer.ready.popleft()
                    break
                if peer.error is not None:
                    raise peer.error
                waited = time.perf_counter() - t0
                if waited > self.timeout:
                    state = "connected" if peer.connected else "disconnected"
                    raise RemoteError(f"no batch from {peer.name} ({state}) for {waited:.0f} s "
                                      f"(wanted epoch {epoch} batch {k}); timeout={self.timeout:g}")
                link.cond.wait(0.5)
        if (ready.epoch, ready.batch) != (epoch, k):
            raise RemoteError(f"{peer.name} delivered epoch {ready.epoch} batch {ready.batch}, "
                              f"expected epoch {epoch} batch {k}")
        self._held = (j, ready.slot)
        now = time.perf_counter()
        s = self._stats
        s["wait_s"] += now - t0
        s["elapsed_s"] = now - self._t_first
        s["batches"] += 1
        s["samples"] += ready.rows
        if ready.frames is not None:  # zero_copy: views of ZeroMQ's frames, this batch's own memory
            views = {name: np.frombuffer(f.buffer, dtype).reshape((ready.rows,) + shape)
                     for (name, shape, dtype), f in zip(link.fields, ready.frames)}
        else:
            views = peer.buffers[ready.slot]
        s["bytes"] += sum(v[: ready.rows].nbytes for v in views.values())
        if self.copy:
            return {name: v[: ready.rows].copy() for name, v in views.items()}
        return {name: v if ready.rows == self.batch_size else v[: ready.rows] for name, v in views.items()}

    def _release(self) -> None:
        if self._held is not None:
            self._link.command("release", *self._held)
            self._held = None

    # ----- resources and observability -------------------------------------------------------------
    def slot_arrays(self) -> List[Dict[str, np.ndarray]]:
        """Every receive buffer's full-batch arrays (fixed for the loader's life), e.g. to pin them once."""
        return [dict(b) for p in self._link.peers for b in p.buffers]

    def stats(self) -> Dict[str, float]:
        """Batches, samples/s, bytes/s and time spent waiting in this process; reconnects so far."""
        s = dict(self._stats)
        elapsed = max(s["elapsed_s"], 1e-9)
        s["samples_per_s"] = s["samples"] / elapsed
        s["bytes_per_s"] = s["bytes"] / elapsed
        s["wait_fraction"] = s["wait_s"] / elapsed
        s["reconnects"] = sum(p.reconnects for p in self._link.peers)
        return s

    def report(self) -> Dict[str, object]:
        """Per server: endpoint, part, connected, batches and bytes received, reconnects, error."""
        return {"servers": [{"endpoint": p.endpoint, "part": list(p.meta["part"]) if p.meta else None,
                             "connected": p.connected, "received": p.received, "bytes": p.bytes,
                             "reconnects": p.reconnects, "error": None if p.error is None else str(p.error)}
                            for p in self._link.peers]}

    def close(self) -> None:
        """Tell the servers to stop, end the receive thread, close the sockets (idempotent)."""
        self._token += 1
        self._finalizer()

    def __enter__(self) -> "RemoteLoader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        eps = [p.endpoint for p in self._link.peers]
        return f"RemoteLoader({eps}, epoch={self._epoch}, next_batch={self._next})"
