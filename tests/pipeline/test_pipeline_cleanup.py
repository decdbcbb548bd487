"""Cleanup: no process and no /dev/shm entry survives interrupts, GC, interpreter exit or a killed main."""
from __future__ import annotations

import gc
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from pipeline_helpers import SleepOn, make_source, wait_dead

from feedstock.pipeline.loader import Loader
from feedstock.pipeline.shm import SHM_DIR

TESTS = Path(__file__).resolve().parents[1]  # the helpers live at the tests root


def _ours(pid: int):
    return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(f"feedstock_{pid}_"))


def test_keyboard_interrupt_inside_a_with_block(no_leaks):
    with pytest.raises(KeyboardInterrupt):
        with Loader(make_source(400), [SleepOn(0.01)], batch_size=4, workers=2, shuffle=True, drop_last=True) as loader:
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
    loader = Loader(make_source(400), [SleepOn(0.01)], batch_size=4, workers=2, shuffle=True, drop_last=True)
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
    loader = Loader(make_source(64), [SleepOn(0.002)], batch_size=4, workers=2, prefetch=3, shuffle=True,
                    drop_last=True)
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
        loader = Loader(make_source(64), [SleepOn(0.002)], batch_size=4, workers=2, start_method=method, shuffle=True,
                        drop_last=True)
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
def test_killed_main_process_workers_exit_and_remove_its_files(no_leaks, tmp_path, method):
    proc, info = _run(tmp_path, "kill", method)
    assert proc.returncode == -signal.SIGKILL
    assert wait_dead(info["workers"]) == []  # they notice their owner is gone
    deadline = time.monotonic() + 30
    while _ours(info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _ours(info["pid"]) == []  # the workers (or any loader's sweep) removed the dead owner's files


# ----- workers that never start: a clear error within seconds, never a hang ----------------------------
_NO_GUARD = textwrap.dedent("""
    import json, sys, threading, time
    import numpy as np
    from feedstock.loaders.array import ArraySource
    from feedstock.pipeline.loader import Loader

    method, rows = sys.argv[1], int(sys.argv[2])
    if method == "auto" and __name__ == "__main__":  # a worker re-runs this as "__mp_main__"
        threading.Thread(target=time.sleep, args=(300,), daemon=True).start()  # "auto" picks spawn here
    source = ArraySource(data=np.arange(rows * 4, dtype=np.int32).reshape(rows, 4), label=np.arange(rows))
    started = time.monotonic()
    try:
        with Loader(source, batch_size=4, workers=2, start_method=method, shuffle=False, drop_last=True) as loader:
            for batch in loader:
                pass
        print(json.dumps({"ok": True}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc).split("\\n\\nWorker traceback")[0],
                          "seconds": time.monotonic() - started}), flush=True)
    time.sleep(120)  # "training": a worker re-running this script would keep the main process waiting
""")


def _no_guard(tmp_path: Path, *args: str) -> dict:
    script = tmp_path / "no_guard.py"
    script.write_text(_NO_GUARD)
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the main process hung"
        out = json.loads(proc.stdout.readline())
        assert _ours(proc.pid) == []  # the failed start left no slot or plan file
        return out
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("method,rows", [
    ("spawn", 64),
    ("forkserver", 64),
    ("auto", 40_000),  # spawn here, fork in the re-run script; a plan (640 KB) far beyond a pipe buffer
    ("spawn", 40_000),
])
def test_a_script_without_main_guard_gets_the_fix_named(tmp_path, method, rows):
    out = _no_guard(tmp_path, method, str(rows))
    assert out.get("error") == "WorkerDied", out
    assert 'if __name__ == "__main__":' in out["message"] and "no_guard.py" in out["message"], out
    assert out["seconds"] < 30, out  # not 16 restarts, not a hang


_LOST_MODULE = textwrap.dedent("""
    import json, os, shutil, sys, time
    import numpy as np

    if __name__ == "__main__":
        folder, kind = sys.argv[1], sys.argv[2]
        sys.path.insert(0, folder)
        import lostsource  # the workers will not find it: it is deleted below
        from feedstock.pipeline.loader import Loader
        os.remove(os.path.join(folder, "lostsource.py"))
        shutil.rmtree(os.path.join(folder, "__pycache__"), ignore_errors=True)
        rows = 64 if kind == "small" else 40_000
        source = lostsource.Source(data=np.zeros((rows, 4), np.int32), label=np.arange(rows))
        started = time.monotonic()
        try:
            with Loader(source, batch_size=4, workers=2, start_method="spawn", shuffle=True, drop_last=True) as loader:
                next(iter(loader))
            print(json.dumps({"ok": True}), flush=True)
        except Exception as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc).split("\\n\\nWorker traceback")[0],
                              "seconds": time.monotonic() - started}), flush=True)
""")


@pytest.mark.parametrize("kind", ["small", "large"])
def test_an_import_error_in_the_worker_is_named(no_leaks, tmp_path, kind):
    (tmp_path / "lostsource.py").write_text(
        "from feedstock.loaders.array import ArraySource\n\nclass Source(ArraySource):\n    pass\n")
    (tmp_path / "main.py").write_text(_LOST_MODULE)
    proc = subprocess.run([sys.executable, str(tmp_path / "main.py"), str(tmp_path), kind], capture_output=True,
                          text=True, timeout=120)
    out = json.loads(proc.stdout)
    assert out.get("error") == "WorkerError", out
    assert "No module named 'lostsource'" in out["message"] and "importable module" in out["message"], out
    assert out["seconds"] < 30, out


_FAILING_IMPORT = textwrap.dedent("""
    import json, sys, time
    if __name__ != "__main__":  # a worker re-runs this as "__mp_main__"
        import a_module_only_the_main_process_has  # e.g. a package missing where workers start
    sys.path.insert(0, {tests!r})
    from pipeline_helpers import make_source
    from feedstock.pipeline.loader import Loader

    if __name__ == "__main__":
        started = time.monotonic()
        try:
            with Loader(make_source(64), batch_size=4, workers=2, start_method=sys.argv[1], shuffle=True,
                        drop_last=True) as loader:
                next(iter(loader))
        except Exception as exc:
            print(json.dumps({{"error": type(exc).__name__, "message": str(exc),
                              "seconds": time.monotonic() - started}}), flush=True)
""")


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_main_script_that_fails_to_import_in_the_worker(tmp_path, method):
    (tmp_path / "main.py").write_text(_FAILING_IMPORT.format(tests=str(TESTS)))
    proc = subprocess.run([sys.executable, str(tmp_path / "main.py"), method], capture_output=True, text=True,
                          timeout=120)
    out = json.loads(proc.stdout)
    assert out["error"] == "WorkerDied" and "before it started" in out["message"], out
    assert "import" in out["message"] and "main.py" in out["message"], out
    assert "a_module_only_the_main_process_has" in proc.stderr  # the worker's own traceback
    assert out["seconds"] < 30, out


def test_a_plan_that_cannot_be_pickled_names_the_fix(no_leaks):
    local = SleepOn(0.0)
    local.__class__ = type("LocalSleep", (SleepOn,), {})  # a class defined in a function: not importable
    loader = Loader(make_source(16), [local], batch_size=4, workers=1, start_method="spawn", shuffle=True,
                    drop_last=True)
    with pytest.raises(TypeError, match="cannot send the workers' plan .* importable module"):
        next(iter(loader))
    loader.close()
