"""The generic supervised pool: ordered map, errors as data, death replacement, timeouts, shutdown."""
from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from pipeline_helpers import wait_dead

from feedstock.errors import WorkerDied, WorkerError, WorkerTimeout
from feedstock.pipeline.ordered import ordered_map
from feedstock.pipeline.pool import ProcessPool, choose_start_method
from feedstock.pipeline.worker import OwnerWatch


def square_slowly(x: int) -> int:
    time.sleep(0.002 * (x % 3))  # finish out of order
    return x * x


def encode(chunk):
    """Variable-length bytes per record, as build-lmdb produces."""
    return [bytes([i % 256]) * i for i in chunk]


def fail_on_five(x: int) -> int:
    if x == 5:
        exc = ValueError("five is not allowed")
        exc.record_key = "item-5"
        raise exc
    return x


def die_once(marker: str, x: int) -> int:
    if x == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return -x


def always_die(x: int) -> int:
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def sleep_forever(x: int) -> int:
    time.sleep(3600)
    return x


def failing_factory(wid: int):
    raise OSError(f"worker {wid} cannot open its database")


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_ordered_map_keeps_input_order(no_leaks, workers):
    assert list(ordered_map(square_slowly, range(20), workers=workers, window=4)) == [x * x for x in range(20)]


def test_ordered_map_of_variable_length_bytes(no_leaks):
    chunks = [range(i, i + 5) for i in range(0, 50, 5)]
    got = [b for chunk in ordered_map(encode, chunks, workers=2) for b in chunk]
    assert got == [bytes([i % 256]) * i for i in range(50)]


def test_handler_exception_is_raised_with_traceback_and_key(no_leaks):
    with pytest.raises(WorkerError) as info:
        list(ordered_map(fail_on_five, range(10), workers=2))
    assert info.value.key == "item-5" and "five is not allowed" in str(info.value)
    assert "fail_on_five" in info.value.worker_traceback


def test_dead_worker_is_replaced_and_its_tasks_redone(no_leaks, tmp_path):
    fn = functools.partial(die_once, str(tmp_path / "died"))
    assert list(ordered_map(fn, range(12), workers=2)) == [-x for x in range(12)]


def test_a_task_that_kills_every_worker_is_an_error(no_leaks):
    with pytest.raises(WorkerDied, match="killed two workers"):
        list(ordered_map(always_die, range(6), workers=2))


def test_hung_task_times_out_naming_worker_and_task(no_leaks):
    with ProcessPool(functools.partial(_handler_of, sleep_forever), workers=1, timeout=0.5) as pool:
        pids = pool.pids
        pool.submit(41)
        with pytest.raises(WorkerTimeout, match=r"worker 0 \(pid \d+\) did not finish within timeout=0.5 s: task 41"):
            pool.results()
    assert wait_dead(pids) == []


def test_factory_failure_is_reported(no_leaks):
    with ProcessPool(failing_factory, workers=1) as pool:
        pool.submit(1)
        with pytest.raises(WorkerError, match="failed to start: OSError: worker 0 cannot open"):
            pool.results()


def test_close_terminates_busy_workers_quickly(no_leaks):
    pool = ProcessPool(functools.partial(_handler_of, sleep_forever), workers=2).start()
    pids = pool.pids
    for x in range(4):
        pool.submit(x)
    t0 = time.monotonic()
    pool.close()
    assert time.monotonic() - t0 < 5 and wait_dead(pids) == []


def test_results_times_out_empty_and_drain(no_leaks):
    with ProcessPool(functools.partial(_handler_of, square_slowly), workers=2) as pool:
        assert pool.results(timeout=0.05) == []
        for x in range(5):
            pool.submit(x)
        assert pool.drain(timeout=10) and pool.outstanding == 0


def test_start_method_choice():
    assert choose_start_method("spawn") == "spawn"
    expected = "fork" if threading.active_count() == 1 else "spawn"
    assert choose_start_method("auto") == expected
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()
    try:
        assert choose_start_method("auto") == "spawn"  # forking a threaded process risks held locks
    finally:
        stop.set()
        helper.join()
    with pytest.raises(ValueError, match="start_method='threads'"):
        choose_start_method("threads")


def _handler_of(fn, wid):
    return fn


def test_unpicklable_factory_under_spawn_fails_cleanly(no_leaks):
    pool = ProcessPool(lambda wid: (lambda x: x), workers=2, start_method="spawn")
    with pytest.raises(Exception, match="pickle"):
        pool.start()
    pool.close()
    assert pool.pids == []


def test_results_read_with_a_failure_are_kept_and_the_failure_names_its_task(no_leaks):
    with ProcessPool(functools.partial(_handler_of, fail_on_five), workers=1) as pool:
        tids = [pool.submit(x) for x in range(10)]
        got, errors = {}, []
        while len(got) + len(errors) < 10:
            try:
                got.update(pool.results())
            except WorkerError as exc:
                errors.append(exc)
        assert got == {tid: x for x, tid in enumerate(tids) if x != 5}
        assert [e.task_id for e in errors] == [tids[5]] and errors[0].key == "item-5"
        pool.submit(5)
        pool.submit(6)
        assert pool.drain(timeout=10) and pool.results(timeout=0.05) == []  # drained failures are gone too


_FORKSERVER_OWNER = textwrap.dedent("""
    import json, os, signal, sys, time
    from feedstock.pipeline.pool import ProcessPool

    def parent_pid(payload):
        return os.getppid()

    def factory(wid):
        return parent_pid

    if __name__ == "__main__":
        pool = ProcessPool(factory, workers=2, start_method="forkserver").start()
        for wid in range(2):
            pool.submit(None, worker=wid)
        parents = []
        while len(parents) < 2:
            parents += [r for _, r in pool.results()]
        holder = os.fork()  # inherits the fork server's "alive" pipe: the server outlives us
        if holder == 0:
            time.sleep(60)
            os._exit(0)
        print(json.dumps({"main": os.getpid(), "workers": pool.pids, "parents": parents, "holder": holder}),
              flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
""")


def test_forkserver_workers_exit_when_the_owner_dies(no_leaks, tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(_FORKSERVER_OWNER)
    # Read one line, not to EOF: the holder and the fork server keep the pipe open.
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    with proc.stdout:
        info = json.loads(proc.stdout.readline())
        proc.wait(timeout=60)
    try:
        assert proc.returncode == -signal.SIGKILL
        assert info["main"] not in info["parents"]  # their parent is the fork server, which lives on
        assert wait_dead(info["workers"]) == []  # they watch the pool's owner, not their parent
    finally:
        os.kill(info["holder"], signal.SIGKILL)
    assert wait_dead([info["holder"], *info["parents"]]) == []  # the fork server goes with the holder


@pytest.mark.parametrize("pidfd", [True, False])
def test_owner_watch_sees_the_owner_exit(monkeypatch, pidfd):
    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)  # old kernels and Pythons: pid checks
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        watch = OwnerWatch(other.pid)
        assert (watch.fd is not None) == pidfd and not watch.gone()
        other.kill()
        other.wait()
        assert watch.gone() and watch.gone()
        watch.close()
    finally:
        other.kill()
        other.wait()
    alive, dead = OwnerWatch(os.getppid()), OwnerWatch(other.pid)  # dead: reaped before the watch began
    assert not alive.gone() and dead.gone()
    alive.close()
    dead.close()
