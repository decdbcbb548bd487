"""Slot ring: layout, create/attach round trip, unlink, stale sweep by dead owner pid, space check."""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from feedstock.errors import ShmSpaceError
from feedstock.pipeline.shm import SHM_DIR, SlotLayout, SlotRing, check_space, sweep_stale
from feedstock.spec import ArraySpec

SPEC = {"data": ArraySpec((3, 5), np.float32), "label": ArraySpec((), np.int64), "flag": ArraySpec((1,), np.uint8)}


def test_layout_offsets_are_aligned_and_disjoint():
    layout = SlotLayout.of(SPEC, batch_size=7)
    (_, s0, _, o0), (_, s1, _, o1), (_, s2, _, o2) = layout.fields
    assert (s0, s1, s2) == ((7, 3, 5), (7,), (7, 1))
    assert (o0, o1, o2) == (0, 448, 512)  # 7*15*4 = 420 -> 448; 7*8 = 56 -> 64; 7 -> 64
    assert layout.nbytes == 576
    with pytest.raises(ValueError, match="unknown dims"):
        SlotLayout.of({"data": ArraySpec((None, 2), np.uint8)}, 4)


def test_create_attach_round_trip_and_unlink(no_leaks):
    layout = SlotLayout.of(SPEC, batch_size=4)
    ring = SlotRing.create(layout, 3, ctl_entries=2)
    try:
        assert all(n.startswith(f"feedstock_{os.getpid()}_") for n in ring.names) and len(ring.names) == 3
        assert all(os.path.exists(os.path.join(SHM_DIR, n)) for n in [*ring.names, ring.ctl_name])
        assert ring.ctl.tolist() == [-1, -1]
        other = SlotRing.attach(layout, ring.names, ring.ctl_name)
        other.slots[2]["data"][1] = np.arange(15, dtype=np.float32).reshape(3, 5)
        other.slots[2]["label"][3, ...] = 99  # a 0-d row view writes through
        other.ctl[1] = 17
        assert np.array_equal(ring.slots[2]["data"][1], np.arange(15).reshape(3, 5))
        assert ring.slots[2]["label"][3] == 99 and ring.ctl[1] == 17
        assert not ring.slots[0]["data"].any()  # other slots untouched (pre-faulted zeros)
        other.close()
        assert all(os.path.exists(os.path.join(SHM_DIR, n)) for n in ring.names)  # attachers never unlink
    finally:
        ring.close()
    assert not any(os.path.exists(os.path.join(SHM_DIR, n)) for n in ring.names)


def test_close_while_a_batch_view_is_held(no_leaks):
    ring = SlotRing.create(SlotLayout.of(SPEC, batch_size=2), 1)
    held = ring.slots[0]["data"]
    ring.close()  # unlinks even though the mapping lives on in `held`
    held[0] = 1.0
    assert held[0].sum() == 15.0


def test_sweep_removes_only_files_of_dead_owners(no_leaks, monkeypatch, tmp_path):
    # a folder of this test's own: another loader's sweep of /dev/shm must not remove the stale file first
    from feedstock.pipeline import shm

    monkeypatch.setattr(shm, "SHM_DIR", str(tmp_path))
    dead = subprocess.run(["true"]).returncode == 0 and _dead_pid()
    stale = os.path.join(tmp_path, f"feedstock_{dead}_0badc0de_0")
    live = os.path.join(tmp_path, "feedstock_1_0badc0de_ctl")  # pid 1 is alive
    foreign = os.path.join(tmp_path, "feedstock_notours")
    for path in (stale, live, foreign):
        open(path, "wb").close()
    try:
        assert sweep_stale() == [os.path.basename(stale)]
        assert not os.path.exists(stale) and os.path.exists(live) and os.path.exists(foreign)
    finally:
        for path in (stale, live, foreign):
            if os.path.exists(path):
                os.unlink(path)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_space_check_names_the_fix():
    with pytest.raises(ShmSpaceError, match="--shm-size") as info:
        check_space(2**62, slots=4, slot_bytes=2**60)
    assert "4 slots" in str(info.value)
    check_space(1, slots=1, slot_bytes=1)


def test_a_process_that_exits_while_its_stat_is_read_counts_as_dead(monkeypatch):
    # open() of /proc/PID/stat can succeed and read() then fail with ESRCH when the process goes between
    from feedstock.pipeline import shm

    class Gone:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            raise ProcessLookupError(3, "No such process")

    monkeypatch.setattr("builtins.open", lambda *a, **k: Gone())
    assert shm._zombie(12345) is True
