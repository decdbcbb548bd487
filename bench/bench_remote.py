"""Remote feed throughput on loopback vs raw pyzmq sending the same bytes, same run (goal: >= 80%).

The feed: a FeedServer process runs a Loader (1 worker) over 64x3x227x227 uint8
batches of an in-memory source and streams them; a RemoteLoader receives them
into its preallocated buffers (credits, recv_into). The baseline: a process
PUSHes the same-size frames from one preallocated array (zero-copy) to a PULL
socket here, received two ways: zero-copy frames (``recv(copy=False)``; nothing
but ZeroMQ's own work) and ``recv_into`` one preallocated buffer (the copy a
fixed, pinnable buffer costs). Rounds alternate; the medians are compared.
CPU time of both processes (and the server's worker) over the same window is
printed as core-seconds per GB: on a machine with few cores the throughput
ratio is set by the work per byte, which this shows part by part.

    .venv/bin/python bench/bench_remote.py [--batches 60] [--rounds 3]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from typing import List, Sequence, Tuple

import numpy as np
import zmq

SHAPE = (3, 227, 227)
Rate = Tuple[float, float]  # (GB/s, CPU core-seconds per GB)


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU time used so far by this process (all threads) and by ``pids`` and their children."""
    total, tick = time.process_time(), os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            children = open(f"/proc/{pid}/task/{pid}/children").read().split()
            for p in [pid, *map(int, children)]:
                fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


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


def raw_rate(batch: int, count: int, into: bool) -> Rate:
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
    t0, c0 = time.perf_counter(), cpu_seconds([proc.pid])
    for _ in range(count - 1):
        if into:
            sock.recv_into(buf)
        else:
            sock.recv(copy=False)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds([proc.pid]) - c0  # the sender is reaped after this
    sock.close()
    ctx.term()
    proc.join(30)
    gb = len(first) * (count - 1) / 1e9
    return gb / elapsed, cpu / gb


def stream_rate(loader, count: int, pids: Sequence[int] = ()) -> Rate:
    """GB/s of ``data`` over ``count`` batches of ``loader`` (epoch after epoch), from the first batch on;
    CPU seconds per GB of this process and ``pids``."""
    it, nbytes, t0, c0 = iter(loader), 0, None, 0.0
    for _ in range(count):
        b = next(it, None)
        if b is None:
            it = iter(loader)
            b = next(it)
        if t0 is None:
            t0, c0 = time.perf_counter(), cpu_seconds(pids)
        else:
            nbytes += b["data"].nbytes
    elapsed, gb = time.perf_counter() - t0, nbytes / 1e9
    return gb / elapsed, (cpu_seconds(pids) - c0) / gb


def feed_rate(batch: int, count: int, zero_copy: bool = False) -> Rate:
    from feedstock.remote import RemoteLoader

    queue: "mp.Queue" = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_serve, args=(batch, queue))
    proc.start()
    try:
        with RemoteLoader([queue.get(timeout=120)], prefetch=4, zero_copy=zero_copy) as remote:
            return stream_rate(remote, count, [proc.pid])
    finally:
        proc.join(60)


def loader_rate(batch: int, count: int) -> Rate:
    """GB/s of the server's Loader alone (1 worker copying rows into slots), no network."""
    with _source_loader(batch).start() as loader:
        return stream_rate(loader, count, loader.worker_pids())


def main(argv: List[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    mb = args.batch * int(np.prod(SHAPE)) / 1e6
    print(f"{args.batches} batches of {args.batch}x{'x'.join(map(str, SHAPE))} uint8 ({mb:.1f} MB) over tcp loopback")
    runs = {"feed": [], "feed zero_copy": [], "raw pyzmq": [], "raw recv_into": []}
    for r in range(args.rounds):
        runs["raw pyzmq"].append(raw_rate(args.batch, args.batches, into=False))
        runs["raw recv_into"].append(raw_rate(args.batch, args.batches, into=True))
        runs["feed"].append(feed_rate(args.batch, args.batches))
        runs["feed zero_copy"].append(feed_rate(args.batch, args.batches, zero_copy=True))
        print(f"round {r}: " + ", ".join(f"{k} {v[-1][0]:.2f} GB/s" for k, v in runs.items()))
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in runs.items()}
    med["loader alone"] = loader_rate(args.batch, args.batches)
    for k, (gbs, cpu) in med.items():
        print(f"  {k:15s} {gbs:5.2f} GB/s  {cpu:5.2f} CPU core-s/GB")
    f, fz, b, bi = (med[k][0] for k in ("feed", "feed zero_copy", "raw pyzmq", "raw recv_into"))
    print(f"feed into fixed buffers = {f / bi:.2f} of raw recv_into, {f / b:.2f} of raw zero-copy")
    print(f"feed zero_copy = {fz / b:.2f} of raw zero-copy  [goal: >= 0.80]")
    extra = med["feed zero_copy"][1] - med["loader alone"][1] - med["raw pyzmq"][1]
    print(f"CPU per GB of the zero_copy feed beyond raw sending plus the loader's own work: {extra:+.2f} core-s/GB")


if __name__ == "__main__":
    main()
