"""Remote feed throughput on loopback vs raw pyzmq sending the same bytes, same run (goal: >= 80%).

The feed: a FeedServer process runs a Loader (1 worker) over 64x3x227x227 uint8
batches of an in-memory source and streams them; a RemoteLoader receives them
into its preallocated buffers (credits, recv_into). The baseline: a process
PUSHes the same-size frames from one preallocated array (zero-copy) to a PULL
socket here, received two ways: zero-copy frames (``recv(copy=False)``; nothing
but ZeroMQ's own work) and ``recv_into`` one preallocated buffer (the copy a
fixed, pinnable buffer costs). Rounds alternate; the medians are compared.

    .venv/bin/python bench/bench_remote.py [--batches 60] [--rounds 3]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from typing import List

import numpy as np
import zmq

SHAPE = (3, 227, 227)


def _source_loader(batch: int):
    from feedstock import Loader
    from feedstock.loaders.array import ArraySource

    data = np.random.default_rng(0).integers(0, 256, (4 * batch, *SHAPE), dtype=np.uint8)
    return Loader(ArraySource(data=data), batch_size=batch, workers=1, shuffle=False, prefetch=4)


def _serve(batch: int, queue: "mp.Queue") -> None:
    from feedstock.remote import FeedServer

    server = FeedServer(_source_loader(batch), bind="tcp://127.0.0.1:*")
    queue.put(server.endpoint)
    try:
        server.run(idle_exit=3.0)
    finally:
        server.close()


def _push(batch: int, count: int, queue: "mp.Queue") -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.sndhwm = 4
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    queue.put(f"tcp://127.0.0.1:{port}")
    payload = np.random.default_rng(0).integers(0, 256, (batch, *SHAPE), dtype=np.uint8)
    for _ in range(count):
        sock.send(payload, copy=False)
    sock.close(linger=-1)
    ctx.term()


def raw_rate(batch: int, count: int, into: bool) -> float:
    """GB/s of ``count`` frames of one batch each, PUSH (another process) -> PULL here."""
    queue: "mp.Queue" = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_push, args=(batch, count, queue))
    proc.start()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.rcvhwm = 4
    sock.connect(queue.get(timeout=60))
    buf = np.empty((batch, *SHAPE), np.uint8)
    first = sock.recv(copy=False)  # the clock starts once the stream flows, as for the feed
    t0 = time.perf_counter()
    for _ in range(count - 1):
        if into:
            sock.recv_into(buf)
        else:
            sock.recv(copy=False)
    elapsed = time.perf_counter() - t0
    sock.close()
    ctx.term()
    proc.join(30)
    return len(first) * (count - 1) / elapsed / 1e9


def stream_rate(loader, count: int) -> float:
    """GB/s of ``data`` over ``count`` batches of ``loader`` (epoch after epoch), from the first batch on."""
    it, nbytes, t0 = iter(loader), 0, None
    for _ in range(count):
        b = next(it, None)
        if b is None:
            it = iter(loader)
            b = next(it)
        if t0 is None:
            t0 = time.perf_counter()
        else:
            nbytes += b["data"].nbytes
    return nbytes / (time.perf_counter() - t0) / 1e9


def feed_rate(batch: int, count: int, zero_copy: bool = False) -> float:
    from feedstock.remote import RemoteLoader

    queue: "mp.Queue" = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_serve, args=(batch, queue))
    proc.start()
    try:
        with RemoteLoader([queue.get(timeout=120)], prefetch=4, zero_copy=zero_copy) as remote:
            return stream_rate(remote, count)
    finally:
        proc.join(60)


def loader_rate(batch: int, count: int) -> float:
    """GB/s of the server's Loader alone (1 worker copying rows into slots), no network."""
    with _source_loader(batch) as loader:
        return stream_rate(loader, count)


def main(argv: List[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    mb = args.batch * int(np.prod(SHAPE)) / 1e6
    print(f"{args.batches} batches of {args.batch}x{'x'.join(map(str, SHAPE))} uint8 ({mb:.1f} MB) over tcp loopback")
    feed, feed_zc, raw, raw_into = [], [], [], []
    for r in range(args.rounds):
        raw.append(raw_rate(args.batch, args.batches, into=False))
        raw_into.append(raw_rate(args.batch, args.batches, into=True))
        feed.append(feed_rate(args.batch, args.batches))
        feed_zc.append(feed_rate(args.batch, args.batches, zero_copy=True))
        print(f"round {r}: feed {feed[-1]:.2f} GB/s (zero_copy {feed_zc[-1]:.2f}), raw pyzmq {raw[-1]:.2f} GB/s, "
              f"raw recv_into {raw_into[-1]:.2f} GB/s")
    f, fz, b, bi = (statistics.median(x) for x in (feed, feed_zc, raw, raw_into))
    print(f"the server's Loader alone, no network: {loader_rate(args.batch, args.batches):.2f} GB/s")
    print(f"median: feed into fixed buffers {f:.2f} GB/s = {f / bi:.2f} of raw recv_into ({bi:.2f} GB/s), "
          f"{f / b:.2f} of raw zero-copy ({b:.2f} GB/s)")
    print(f"median: feed zero_copy {fz:.2f} GB/s = {fz / b:.2f} of raw zero-copy  [goal: >= 0.80 of raw]")


if __name__ == "__main__":
    main()
