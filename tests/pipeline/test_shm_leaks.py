"""/dev/shm leaks and workers that never start: failed ring creation, zombie and SIGTERMed owners, spawn traps."""
from __future__ import annotations

import errno
import json
import mmap
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import wait_dead

from feedstock.errors import ShmSpaceError
from feedstock.pipeline import shm
from feedstock.pipeline.shm import SHM_DIR, SlotLayout, SlotRing, pid_alive, sweep_stale
from feedstock.pipeline.worker import OwnerWatch
from feedstock.spec import ArraySpec

TESTS = Path(__file__).resolve().parents[1]  # the helpers live at the tests root
LAYOUT = SlotLayout.of({"data": ArraySpec((16,), np.float32)}, batch_size=4)


def _ours() -> set:
    return {n for n in os.listdir(SHM_DIR) if n.startswith(f"feedstock_{os.getpid()}_")}


def _owned_by(pid: int, folder: str = SHM_DIR) -> list:
    return sorted(n for n in os.listdir(folder) if n.startswith(f"feedstock_{pid}_"))


@pytest.fixture
def private_shm(monkeypatch):
    """A tmpfs folder of this test's own instead of /dev/shm: the sweeps of loaders running beside us
    (other tests, other users) cannot remove what a test expects a dead owner's workers to remove."""
    folder = tempfile.mkdtemp(prefix="fstest_", dir=SHM_DIR)
    monkeypatch.setattr(shm, "SHM_DIR", folder)
    yield folder
    shutil.rmtree(folder)


def _failing_on_call(n: int, exc: BaseException, real):
    calls = []

    def fake(*args, **kwargs):
        calls.append(args)
        if len(calls) == n:
            raise exc
        return real(*args, **kwargs)

    return fake


# ----- ring creation that fails half-way --------------------------------------------------------------
@pytest.mark.parametrize("call,exc,raises", [
    (3, OSError(errno.ENOSPC, "No space left on device"), ShmSpaceError),  # the 3rd of 4 slots
    (1, OSError(errno.ENOSPC, "No space left on device"), ShmSpaceError),  # the very first file
    (5, OSError(errno.ENOSPC, "No space left on device"), ShmSpaceError),  # the control file
    (2, OSError(errno.EIO, "Input/output error"), OSError),
    (2, KeyboardInterrupt(), KeyboardInterrupt),                             # Ctrl-C while pre-faulting
])
def test_a_failed_fallocate_leaves_no_file(monkeypatch, no_leaks, call, exc, raises):
    before = _ours()
    monkeypatch.setattr(shm.os, "posix_fallocate", _failing_on_call(call, exc, os.posix_fallocate))
    with pytest.raises(raises):
        SlotRing.create(LAYOUT, 4, ctl_entries=3)
    assert _ours() == before


@pytest.mark.parametrize("call", [1, 4, 5])
def test_a_failed_map_leaves_no_file(monkeypatch, no_leaks, call):
    before = _ours()
    monkeypatch.setattr(shm.mmap, "mmap", _failing_on_call(call, OSError(errno.ENOMEM, "Cannot allocate"),
                                                           mmap.mmap))
    with pytest.raises(OSError, match="Cannot allocate"):
        SlotRing.create(LAYOUT, 4, ctl_entries=3)
    assert _ours() == before


def test_a_name_taken_by_someone_else_is_not_unlinked(monkeypatch, no_leaks):
    """O_EXCL failing means the file is not ours: a failed create must not remove it."""
    monkeypatch.setattr(shm.secrets, "token_hex", lambda n: "0badf00d")
    taken = os.path.join(SHM_DIR, f"feedstock_{os.getpid()}_0badf00d_1")
    open(taken, "wb").close()
    try:
        with pytest.raises(FileExistsError):
            SlotRing.create(LAYOUT, 3)
        assert os.path.exists(taken)
        assert _ours() == {os.path.basename(taken)}  # slot 0, created before, is gone again
    finally:
        os.unlink(taken)


# ----- zombie owners ---------------------------------------------------------------------------------
def _zombie() -> subprocess.Popen:
    """A child that has exited but is not reaped (its pid stays taken; kill(pid, 0) succeeds)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return proc
        time.sleep(0.02)
    raise AssertionError("the child did not exit")


def test_files_of_a_zombie_owner_are_swept(private_shm):
    zombie = _zombie()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    names = [f"feedstock_{zombie.pid}_0badc0de_{s}" for s in ("0", "1", "ctl", "plan")]
    kept = [f"feedstock_{live.pid}_0badc0de_0", f"feedstock_{os.getpid()}_0badc0de_0", "feedstock_x_1_0"]
    try:
        os.kill(zombie.pid, 0)  # what the old check asked: it succeeds for a zombie
        assert not pid_alive(zombie.pid) and pid_alive(live.pid) and pid_alive(os.getpid())
        for name in (*names, *kept):
            open(os.path.join(private_shm, name), "wb").close()
        assert sorted(sweep_stale()) == sorted(names)
        assert sorted(os.listdir(private_shm)) == sorted(kept)
    finally:
        live.kill()
        live.wait()
        zombie.wait()


def test_a_sweep_for_one_owner_touches_no_other(private_shm):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    other = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    other.wait()
    mine, theirs = f"feedstock_{dead.pid}_00aa_0", f"feedstock_{other.pid}_00aa_ctl"
    for name in (mine, theirs):
        open(os.path.join(private_shm, name), "wb").close()
    assert sweep_stale(owner=dead.pid) == [mine]
    assert os.listdir(private_shm) == [theirs]


def test_a_worker_without_pidfd_sees_a_zombie_owner_as_gone(monkeypatch):
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    zombie = _zombie()
    try:
        watch = OwnerWatch(zombie.pid)
        assert watch.fd is None and watch.gone()
    finally:
        zombie.wait()


def test_a_process_name_with_parentheses_and_spaces_is_parsed():
    """/proc/PID/stat is "pid (comm) state ...": comm may hold ") Z (" itself."""
    script = "import ctypes, time; ctypes.CDLL(None).prctl(15, b') Z (x', 0, 0, 0); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and b") Z (" not in Path(f"/proc/{proc.pid}/stat").read_bytes():
            time.sleep(0.02)
        assert b") Z (" in Path(f"/proc/{proc.pid}/stat").read_bytes()
        assert pid_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


# ----- an owner killed by SIGTERM or SIGKILL: its workers remove its files --------------------------------
_OWNER = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {tests!r})
    from pipeline_helpers import SleepOn, make_source
    from feedstock.pipeline import shm
    from feedstock.pipeline.loader import Loader

    shm.SHM_DIR = sys.argv[2]  # at the top: spawned workers re-run this part

    if __name__ == "__main__":
        loader = Loader(make_source(64), [SleepOn(0.002)], batch_size=4, workers=2, start_method=sys.argv[1],
                        shuffle=True, drop_last=True)
        it = iter(loader)
        next(it)
        print(json.dumps({{"workers": loader.worker_pids(), "files": len(loader.shm_files())}}), flush=True)
        time.sleep(120)
""")


@pytest.mark.parametrize("sig,method,reap", [
    (signal.SIGTERM, "fork", True), (signal.SIGTERM, "spawn", True), (signal.SIGTERM, "forkserver", True),
    (signal.SIGKILL, "fork", True), (signal.SIGKILL, "spawn", True),
    (signal.SIGTERM, "fork", False), (signal.SIGKILL, "fork", False),  # the owner stays a zombie meanwhile
])
def test_the_workers_of_a_killed_owner_remove_its_files(tmp_path, private_shm, sig, method, reap):
    script = tmp_path / "owner.py"
    script.write_text(_OWNER.format(tests=str(TESTS)))
    proc = subprocess.Popen([sys.executable, str(script), method, private_shm], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        assert len(_owned_by(proc.pid, private_shm)) == info["files"]  # the slots and the control file
        proc.send_signal(sig)
        if reap:
            proc.wait(30)
        assert wait_dead(info["workers"], 15) == []
        deadline = time.monotonic() + 30
        while _owned_by(proc.pid, private_shm) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _owned_by(proc.pid, private_shm) == []  # the workers removed them: nobody else sweeps here
    finally:
        proc.kill()
        proc.wait()


_STUCK_OWNER = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {tests!r})
    from pipeline_helpers import SleepOn, make_source
    from feedstock.pipeline import shm
    from feedstock.pipeline.loader import Loader

    shm.SHM_DIR = sys.argv[2]
    if __name__ == "__main__":
        never = SleepOn(None, labels=range(8, 64))  # batches from 2 on never finish
        loader = Loader(make_source(64), [never], batch_size=4, workers=2, shuffle=False, start_method=sys.argv[1],
                        drop_last=True)
        it = iter(loader)
        next(it)
        time.sleep(0.5)  # the workers are now inside tasks that never return
        print(json.dumps({{"workers": loader.worker_pids()}}), flush=True)
        time.sleep(120)
""")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_stuck_in_a_task_leave_with_their_killed_owner(tmp_path, private_shm, method):
    script = tmp_path / "stuck.py"
    script.write_text(_STUCK_OWNER.format(tests=str(TESTS)))
    proc = subprocess.Popen([sys.executable, str(script), method, private_shm], stdout=subprocess.PIPE, text=True)
    info: dict = {"workers": []}
    try:
        info = json.loads(proc.stdout.readline())
        assert _owned_by(proc.pid, private_shm)
        proc.kill()
        proc.wait(30)
        assert wait_dead(info["workers"], 15) == []
        assert _owned_by(proc.pid, private_shm) == []
    finally:
        proc.kill()
        proc.wait()
        for pid in info["workers"]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_stale_file_that_is_not_ours_to_remove_does_not_break_the_sweep(private_shm, monkeypatch):
    """Another user's stale file in sticky /dev/shm: unlink is refused; the sweep goes on, ring creation too."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    theirs, mine = f"feedstock_{dead.pid}_00aa_0", f"feedstock_{dead.pid}_00aa_1"
    for name in (theirs, mine):
        open(os.path.join(private_shm, name), "wb").close()
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if os.path.basename(path) == theirs:
            raise PermissionError(errno.EPERM, "Operation not permitted", path)
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(shm.os, "unlink", unlink)
    assert sweep_stale() == [mine]
    ring = SlotRing.create(LAYOUT, 2)  # sweeps first: must not fail on that file
    ring.close()
    monkeypatch.undo()
    os.unlink(os.path.join(private_shm, theirs))
