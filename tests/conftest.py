"""Shared fixtures: the real data in ../shared/data (skipped when absent) and leak checks."""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from feedstock.pipeline.shm import pid_alive

ROOT = Path(__file__).resolve().parents[1]

# A suite started in the background of a non-interactive shell (`make test &`, nohup) inherits SIGINT
# ignored: then no Ctrl-C test could interrupt anything, here or in the processes the tests start.
# Python's own handler restores it (a handled signal is reset to the default across exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
SHARED_DATA = Path(os.environ.get("FEEDSTOCK_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Temporary files of the processes the tests start go to one folder of this run, removed at its end:
# owners killed on purpose leave multiprocessing's pymp-* folders, and Ray keeps a session folder
# per start (its logs): each run of the suite left about 10 of them in /tmp. This process keeps the
# usual folder (pytest's tmp_path lives there); the short prefix keeps Ray's socket paths under the
# 108 bytes a Unix socket may have.
tempfile.tempdir = tempfile.gettempdir()
_CHILD_TMP = tempfile.mkdtemp(prefix="fst")
os.environ["TMPDIR"] = _CHILD_TMP


def pytest_unconfigure(config) -> None:
    shutil.rmtree(_CHILD_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of small real fixtures; tests using it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


def _our_shm_entries() -> set[str]:
    """Entries of this process, and entries whose owner died (leaked by a child we started).

    Names are ``feedstock_<owner pid>_...``; live entries of other processes (tests
    running beside us) are not ours to count.
    """
    try:
        names = [n for n in os.listdir("/dev/shm") if n.startswith("feedstock")]
    except FileNotFoundError:
        return set()
    ours = set()
    for name in names:
        parts = name.split("_")
        pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        if pid is None or pid == os.getpid() or not pid_alive(pid):
            ours.add(name)
    return ours


def _children() -> list:
    import multiprocessing

    return [p for p in multiprocessing.active_children()]


@pytest.fixture
def no_leaks():
    """Assert a test leaves no new /dev/shm entries of ours and no live child processes."""
    before = _our_shm_entries()
    yield
    import time

    deadline = time.monotonic() + 30.0  # a wait, not a bound: ends as soon as all is gone
    while time.monotonic() < deadline and (_our_shm_entries() - before or _children()):
        time.sleep(0.05)
    assert _our_shm_entries() - before == set(), "shared-memory entries leaked"
    assert _children() == [], f"child processes left: {_children()}"


def _stop_zmq_garbage_thread() -> None:
    """pyzmq starts one process-wide thread on the first zero-copy send (it frees the buffers ZeroMQ
    let go of) and keeps it for the process's life. In the test process it would make every later
    Loader with start_method="auto" spawn its workers instead of forking them (a Python thread is
    running), so each test module that sent with zero copy stops it again."""
    import sys

    garbage = sys.modules.get("zmq.utils.garbage")
    if garbage is not None and garbage.gc.is_alive():
        garbage.gc.stop()


@pytest.fixture(autouse=True, scope="module")
def no_threads_left():
    """Each test module ends every Python thread it started (a leftover one would also change the
    start method of the modules after it)."""
    import threading
    import time

    def started() -> set:
        # Ray Data's "Prefetcher" (an idle daemon parked on a condition) outlives an iteration stopped
        # early, such as a Ray build stopped at a failed partition, until its iterator is collected;
        # under load that was after the module ended (closing and collecting the iterator did not end it)
        return {t for t in set(threading.enumerate()) - before if t.name != "Prefetcher"}

    before = set(threading.enumerate())
    yield
    _stop_zmq_garbage_thread()
    deadline = time.monotonic() + 10.0  # a wait, not a bound: ends as soon as all are gone
    while time.monotonic() < deadline and started():
        time.sleep(0.05)
    left = started()
    assert not left, f"threads left running: {sorted(t.name for t in left)}"
