"""Helpers of the ray engine tests: a multi-node test cluster on this machine, leak checks, test data."""
from __future__ import annotations

import gc
import logging
import os
import signal
import time
from pathlib import Path
from typing import Dict, Iterable, List, Set

import numpy as np

from feedstock.spec import Sample, Spec
from feedstock.transforms.base import Transform

Batch = Dict[str, np.ndarray]
# a dead node is noticed within about a second (Ray's default takes some 30 s)
FAST_FAILURE = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 300,
                "health_check_failure_threshold": 3}


class Slow(Transform):
    """Identity that takes ``seconds`` per sample: keeps actors busy, so nodes join and leave mid-epoch."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if self.seconds:
            time.sleep(self.seconds)
        return sample

    def output_spec(self, spec: Spec) -> Spec:
        return spec


def descendants(pid: int) -> Set[int]:
    """Every live process below ``pid``, read from /proc (Ray's processes are not multiprocessing children)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            # multiprocessing's resource tracker lives as long as this interpreter: not a test's process
            if fields[0] != "Z" and "resource_tracker" not in cmdline(int(entry)):
                parents[int(entry)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def shm_entries() -> Set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


def wait_until(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"


def assert_no_process_left(pid: int, seconds: float = 20.0) -> None:
    """No process below ``pid`` after ``seconds``. A Ray worker process orphaned by a node killed with
    SIGKILL (its raylet gone) may linger after ``Cluster.shutdown()``: those we end by pid, then check."""
    left = set()

    def none_left() -> bool:
        left.clear()
        left.update(descendants(pid))
        return not left

    if wait_until(none_left, seconds):
        return
    stray = {p: cmdline(p) for p in left}
    others = {p: c for p, c in stray.items() if "ray" not in c}
    assert not others, f"processes left behind: {others}"
    for p in stray:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert wait_until(none_left, 5.0), f"processes left behind: { {p: cmdline(p) for p in left} }"


def assert_no_new_shm(before: Set[str], seconds: float = 10.0) -> None:
    """No /dev/shm entry appeared that is still there (Ray's plasma files and our slots alike)."""
    assert wait_until(lambda: not (shm_entries() - before - _others()), seconds), \
        f"/dev/shm entries left: {sorted(shm_entries() - before - _others())}"


def _others() -> Set[str]:
    """Slot files of other live processes (tests running beside us on this shared machine)."""
    from feedstock.pipeline.shm import owner_of, pid_alive

    out = set()
    for name in shm_entries():
        owner = owner_of(name)
        if owner is not None and owner != os.getpid() and pid_alive(owner):
            out.add(name)
    return out


def ray_refs_held(ray) -> Dict:
    """Object references this driver still holds (a closed loader must hold none)."""
    gc.collect()
    worker = ray._private.worker.global_worker
    return dict(worker.core_worker.get_all_reference_counts())


def quiet_ray_logs() -> None:
    for name in ("ray", "ray.cluster_utils", "ray._private"):
        logging.getLogger(name).setLevel(logging.ERROR)


def copies(batches: Iterable[Batch]) -> List[Batch]:
    return [{k: np.array(v, copy=True) for k, v in b.items()} for b in batches]


def assert_same(got: List[Batch], want: List[Batch]) -> None:
    assert len(got) == len(want), (len(got), len(want))
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.keys() == b.keys(), i
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, (i, k, a[k].shape, b[k].shape)
            assert np.array_equal(a[k], b[k]), f"batch {i} field {k} differs"
