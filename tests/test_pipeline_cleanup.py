"""Cleanup: no process and no /dev/shm entry survives interrupts, GC, interpreter exit or a killed main."""
from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from feedstock.pipeline.loader import Loader
from feedstock.pipeline.shm import SHM_DIR
from pipeline_helpers import SleepOn, make_source, wait_dead

TESTS = Path(__file__).resolve().parent


def _ours(pid: int):
    return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(f"feedstock_{pid}_"))


def test_keyboard_interrupt_inside_a_with_block(no_leaks):
    with pytest.raises(KeyboardInterrupt):
        with Loader(make_source(400), [SleepOn(0.01)], batch_size=4, workers=2) as loader:
            it = iter(loader)
            next(it)
            pids = loader.worker_pids()
            timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            for _ in it:
                pass
    timer.join()
    assert wait_dead(pids) == []


def test_keyboard_interrupt_without_close(no_leaks):
    loader = Loader(make_source(400), [SleepOn(0.01)], batch_size=4, workers=2)
    it = iter(loader)
    next(it)
    pids = loader.worker_pids()
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        for _ in it:
            pass
    timer.join()
    del it, loader  # wherever the interrupt landed, dropping the loader must clean up
    gc.collect()
    assert wait_dead(pids) == []


def _abandon() -> list:
    loader = Loader(make_source(64), [SleepOn(0.002)], batch_size=4, workers=2, prefetch=3)
    it = iter(loader)
    next(it)
    return loader.worker_pids()  # the iterator and the loader become garbage here


def test_garbage_collected_iterator_and_loader(no_leaks):
    pids = _abandon()
    gc.collect()
    assert len(pids) == 2 and wait_dead(pids) == []


_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    sys.path.insert(0, {tests!r})
    from pipeline_helpers import SleepOn, make_source
    from feedstock.pipeline.loader import Loader

    if __name__ == "__main__":
        mode, method = sys.argv[1], sys.argv[2]
        loader = Loader(make_source(64), [SleepOn(0.002)], batch_size=4, workers=2, start_method=method)
        it = iter(loader)
        next(it)
        print(json.dumps({{"pid": os.getpid(), "workers": loader.worker_pids()}}), flush=True)
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "raise":
            raise RuntimeError("uncaught")
        # "exit": the interpreter ends with the loader and a suspended iterator alive
""")


def _run(tmp_path: Path, mode: str, method: str = "fork"):
    script = tmp_path / "main.py"
    script.write_text(_SCRIPT.format(tests=str(TESTS)))
    proc = subprocess.run([sys.executable, str(script), mode, method], capture_output=True, text=True, timeout=120)
    info = json.loads(proc.stdout.splitlines()[0])
    return proc, info


@pytest.mark.parametrize("mode,method", [
    ("exit", "fork"), ("raise", "fork"), ("exit", "spawn"), ("exit", "forkserver"),
])
def test_interpreter_exit_leaves_nothing(no_leaks, tmp_path, mode, method):
    proc, info = _run(tmp_path, mode, method)
    assert wait_dead(info["workers"]) == []
    assert _ours(info["pid"]) == []
    assert "resource_tracker" not in proc.stderr and "leaked" not in proc.stderr
    if mode == "exit":
        assert proc.returncode == 0 and proc.stderr == ""
    else:
        assert "RuntimeError: uncaught" in proc.stderr


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_killed_main_process_workers_exit_and_next_loader_sweeps(no_leaks, tmp_path, method):
    proc, info = _run(tmp_path, "kill", method)
    assert proc.returncode == -signal.SIGKILL
    assert wait_dead(info["workers"]) == []  # they notice their parent is gone
    left = _ours(info["pid"])
    assert left and all(name.startswith("feedstock_") for name in left)  # nobody could unlink them
    with Loader(make_source(8), batch_size=4, workers=1) as loader:
        next(iter(loader))
        assert _ours(info["pid"]) == []  # swept: their owner is dead
