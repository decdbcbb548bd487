"""Interrupted builds (SIGKILL), --resume, and --shard + merge-lmdb give the uninterrupted build's bytes."""
from __future__ import annotations

import os
import signal
import time

import cv2
import lmdb
import numpy as np
import pytest
from test_build_helpers import cli_output, cli_process, read_db

from feedstock.fixtures.synthetic import make_raw_lmdb

ARGS = ["--val-fraction", "0.2", "--shuffle", "--seed", "3", "--mean", "--quiet"]


@pytest.fixture
def folder(tmp_path):
    """150 small PNGs in 3 classes plus one unreadable file."""
    rng = np.random.default_rng(0)
    for c in "abc":
        os.makedirs(tmp_path / "imgs" / c)
        for i in range(50):
            assert cv2.imwrite(str(tmp_path / "imgs" / c / f"{i:03d}.png"),
                               rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8))
    (tmp_path / "imgs" / "b" / "broken.png").write_bytes(b"\x89PNG broken")
    return tmp_path / "imgs"


def build(*args):
    code, out, err = cli_output(["build-lmdb", *map(str, args)])
    assert code == 0, err
    return out


def outputs(path):
    """Everything a build publishes that must not depend on interruptions, shards or workers."""
    files = {name: (path / name).read_bytes() for name in ("mean.binaryproto", "mean.npy", "labels.txt", "skipped.txt")}
    return {"train": read_db(path / "train_lmdb"), "val": read_db(path / "val_lmdb"), **files}


def committed(db) -> int:
    if not (db / "data.mdb").exists():
        return 0
    env = lmdb.open(str(db), readonly=True)  # with the lock table: safe while the writer runs
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def wait_group_gone(pgid: int, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {pgid} still alive")


def test_killed_build_leaves_no_output_and_resume_gives_identical_bytes(folder, tmp_path):
    build(folder, tmp_path / "clean", "--workers", "0", *ARGS)
    out = tmp_path / "out"
    proc = cli_process(["build-lmdb", folder, out, "--workers", "2", "--txn-size", "10",
                        "--throttle-ms", "25", *ARGS])
    try:
        deadline = time.monotonic() + 60
        while committed(tmp_path / "out.partial" / "train_lmdb") < 30:
            assert proc.poll() is None, "the build finished before it could be killed"
            assert time.monotonic() < deadline, "the build made no progress"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the build and its workers, as a job scheduler would
        proc.wait()
    wait_group_gone(proc.pid)
    assert not out.exists()  # nothing complete-looking
    assert 30 <= committed(tmp_path / "out.partial" / "train_lmdb") < 120
    code, _, err = cli_output(["build-lmdb", folder, out, "--workers", "0", *ARGS])
    assert code == 1 and "--resume" in err  # an interrupted build is not silently overwritten
    text = build(folder, out, "--workers", "0", "--resume", *ARGS)
    assert "(resumed)" in text
    assert outputs(out) == outputs(tmp_path / "clean")
    assert not (tmp_path / "out.partial").exists()
    assert "already complete" in build(folder, out, "--workers", "0", "--resume", *ARGS)


def test_resume_refuses_different_settings(folder, tmp_path):
    out = tmp_path / "out"
    build(folder, tmp_path / "first", "--workers", "0", *ARGS)
    os.rename(tmp_path / "first", tmp_path / "out.partial")  # a "partial" build made with ARGS
    code, _, err = cli_output(["build-lmdb", folder, out, "--resume", "--seed", "4", "-q", "--workers", "0"])
    assert code == 1 and "cannot resume" in err and "seed" in err


def test_shards_merge_into_the_single_machine_build(folder, tmp_path):
    build(folder, tmp_path / "single", "--workers", "0", *ARGS)
    for i in range(3):
        build(folder, tmp_path / f"s{i}", "--workers", "0", "--shard", f"{i}/3", *ARGS)
    assert not (tmp_path / "s0" / "mean.binaryproto").exists()  # shards keep exact sums instead
    code, out, err = cli_output(["merge-lmdb", tmp_path / "merged", tmp_path / "s2", tmp_path / "s0",
                                 tmp_path / "s1", "-q"])
    assert code == 0, err
    assert outputs(tmp_path / "merged") == outputs(tmp_path / "single")
    code, _, err = cli_output(["merge-lmdb", tmp_path / "bad", tmp_path / "s0", tmp_path / "s2", "-q"])
    assert code == 1 and "shards 0..2" in err and not (tmp_path / "bad").exists()


def test_merge_of_plain_lmdbs_renumbers_keys(tmp_path):
    rng = np.random.default_rng(1)
    make_raw_lmdb(str(tmp_path / "p0"), rng, 3, shape=(1, 2, 2))
    make_raw_lmdb(str(tmp_path / "p1"), rng, 2, shape=(1, 2, 2))
    code, out, err = cli_output(["merge-lmdb", tmp_path / "m", tmp_path / "p0", tmp_path / "p1", "-q"])
    assert code == 0, err
    merged = read_db(tmp_path / "m")
    assert [k for k, _ in merged] == [b"00000000_img0.png", b"00000001_img1.png", b"00000002_img2.png",
                                      b"00000003_img0.png", b"00000004_img1.png"]
    assert [v for _, v in merged] == [v for _, v in read_db(tmp_path / "p0") + read_db(tmp_path / "p1")]
    assert "renumbered" in out


def test_merge_never_replaces_or_removes_a_shard(tmp_path):
    rng = np.random.default_rng(2)
    make_raw_lmdb(str(tmp_path / "parts" / "p0"), rng, 2, shape=(1, 2, 2))
    make_raw_lmdb(str(tmp_path / "parts" / "p1"), rng, 2, shape=(1, 2, 2))
    before = read_db(tmp_path / "parts" / "p0")
    for out, message in ((tmp_path / "parts" / "p0", "is the source"), (tmp_path / "parts", "contains the source")):
        code, _, err = cli_output(["merge-lmdb", out, tmp_path / "parts" / "p0", tmp_path / "parts" / "p1",
                                   "--force", "-q"])
        assert code == 1 and message in err
    assert read_db(tmp_path / "parts" / "p0") == before and read_db(tmp_path / "parts" / "p1")
