"""CLI errors a user can act on (missing path, full disk, permissions, LMDB, ZeroMQ, OpenCV) are one line."""
from __future__ import annotations

import argparse
import errno
import os
import resource
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest
import zmq

from feedstock.cli.env_errors import describe
from feedstock.fixtures.synthetic import make_raw_lmdb


def run_cli(*argv: str, cwd: Path, fsize: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:  # a small file size limit stands in for a full disk (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "feedstock.cli.main", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120, preexec_fn=limit if fsize else None)


def one_error_line(done: subprocess.CompletedProcess, command: str) -> str:
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"feedstock {command}: error: ") and "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    make_raw_lmdb(str(tmp_path / "db"), np.random.default_rng(0), 40, (3, 16, 16), classes=3)
    return tmp_path / "db"


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    import cv2

    rng = np.random.default_rng(1)
    for cls in ("cat", "dog"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(20):  # noise: PNGs that do not compress, so the LMDB outgrows a small limit
            noise = rng.integers(0, 256, (32, 32, 3), np.uint8)
            cv2.imwrite(str(tmp_path / "images" / cls / f"{i}.png"), noise)
    return tmp_path / "images"


def test_missing_input_is_one_line_naming_it(tmp_path):
    done = run_cli("compute-mean", "-q", str(tmp_path / "no_such_db"), cwd=tmp_path)
    line = one_error_line(done, "compute-mean")
    assert "no_such_db" in line
    line = one_error_line(run_cli("build-lmdb", "-q", "missing_images", "out", cwd=tmp_path), "build-lmdb")
    assert "missing_images" in line and not (tmp_path / "out").exists()


def test_output_below_a_file_names_the_path_and_the_fix(tmp_path, images):
    (tmp_path / "afile").write_text("")
    done = run_cli("build-lmdb", "-q", str(images), "afile/out", "--workers", "0", cwd=tmp_path)
    line = one_error_line(done, "build-lmdb")
    assert "afile/out" in line and "Not a directory" in line and "not a folder" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_unwritable_output_folder(tmp_path, db):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        line = one_error_line(run_cli("compute-mean", "-q", str(db), str(locked / "mean.binaryproto"),
                                      cwd=tmp_path), "compute-mean")
    finally:
        locked.chmod(0o700)
    assert "Permission denied" in line and "locked" in line and "permissions" in line


def test_no_space_left_names_the_output_and_what_to_do(tmp_path, db):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    line = one_error_line(run_cli("compute-mean", "-q", str(db), "/dev/full", cwd=tmp_path), "compute-mean")
    assert "No space left on device" in line and "/dev/full" in line and "free space" in line


def test_lmdb_write_past_the_file_size_limit_is_one_line(tmp_path, images):
    done = run_cli("build-lmdb", "-q", str(images), "out", "--workers", "0", cwd=tmp_path, fsize=64 << 10)
    line = one_error_line(done, "build-lmdb")
    assert "LMDB error (database out)" in line
    # the limit strikes a whole write (EFBIG) or cuts one short (LMDB reports EIO): either way, what to do
    assert (("File too large" in line and "ulimit" in line)
            or ("Input/output error" in line and "free space" in line))


def test_verbose_adds_the_traceback_before_the_line(tmp_path, db):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    command = ("compute-mean", "-q", str(db), "/dev/full")
    for argv in (("-v", *command), (*command, "-v")):
        done = run_cli(*argv, cwd=tmp_path)
        assert done.returncode == 1
        assert "Traceback (most recent call last)" in done.stderr and "OSError" in done.stderr
        last = done.stderr.splitlines()[-1]
        assert last.startswith("feedstock compute-mean: error: No space left on device")


def test_not_an_lmdb_is_one_line(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "data.mdb").write_bytes(np.random.default_rng(2).bytes(20000))
    line = one_error_line(run_cli("compute-mean", "-q", "bad", cwd=tmp_path), "compute-mean")
    assert "bad" in line and "LMDB" in line


def test_opencv_write_error_is_one_line(tmp_path, db):
    (tmp_path / "sheet").mkdir()  # a folder where the grid image should go: refused before reading
    done = run_cli("inspect", str(db), "--grid", "sheet", cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "feedstock inspect: error: --grid 'sheet' is a directory, not a file: give a file path to write"]


def test_directory_given_for_an_output_file(tmp_path, db):
    (tmp_path / "mean_dir").mkdir()
    line = one_error_line(run_cli("compute-mean", "-q", str(db), "mean_dir", cwd=tmp_path), "compute-mean")
    assert "is a directory" in line.lower() and "mean_dir" in line and "give a file path" in line


def test_zmq_bind_error_names_the_endpoint(tmp_path, db):
    done = run_cli("serve", str(db), "--bind", "tcp://10.255.255.1:5555", "--insecure", "--idle-exit", "5",
                   cwd=tmp_path)
    line = one_error_line(done, "serve")
    assert "tcp://10.255.255.1:5555" in line and "address" in line


def ns(**kw) -> argparse.Namespace:
    return argparse.Namespace(**kw)


def cv2_error() -> Exception:
    import cv2

    try:
        cv2.cvtColor(np.zeros((2, 2, 5), np.uint8), cv2.COLOR_BGR2GRAY)  # 5 channels: a failed assertion
    except cv2.error as e:
        return e
    raise AssertionError("OpenCV accepted a 5-channel image for BGR2GRAY")


@pytest.mark.parametrize("error, args, words", [
    (OSError(errno.ENOSPC, "No space left on device"), ns(out="run/out"),
     ["No space left on device", "writing run/out", "free space"]),
    (OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), ns(db="in_db"), ["reading in_db", "quota"]),
    (PermissionError(errno.EACCES, "Permission denied", "/data/x"), ns(out="o"),
     ["Permission denied: '/data/x'", "permissions"]),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "a.txt"), ns(),
     ["'a.txt'", "check the path"]),
    (OSError(errno.EMFILE, "Too many open files"), ns(), ["ulimit -n"]),
    (zmq.ZMQError(errno.EADDRINUSE), ns(bind="tcp://127.0.0.1:5555"),
     ["ZeroMQ", "tcp://127.0.0.1:5555", "another process"]),
    (zmq.ZMQError(errno.ECONNREFUSED), ns(remote=["tcp://h:1", "tcp://h:2"]),
     ["tcp://h:1, tcp://h:2", "serve"]),
    (lmdb.MapFullError("mdb_put: MDB_MAP_FULL: Environment mapsize limit reached"), ns(out="big_lmdb"),
     ["big_lmdb", "MDB_MAP_FULL", "map size", "free space"]),
    (lmdb.Error("mdb_txn_commit: No space left on device"), ns(out="o_lmdb", src="imgs"),
     ["o_lmdb", "free space"]),
    (lmdb.Error("/x/db: No such file or directory"), ns(db="db"), ["/x/db", "check the path"]),
    (lmdb.CorruptedError("mdb_get: MDB_CORRUPTED"), ns(db="d"), ["d", "rebuild"]),
    (ValueError("bad value\nsecond line"), ns(), ["bad value; second line"]),
    (cv2_error(), ns(src="in.png"), ["OpenCV error (reading in.png)", "Invalid number of channels"]),
])
def test_describe_is_one_line_with_place_and_fix(error, args, words):
    message = describe(error, args)
    assert message is not None and "\n" not in message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("error", [RuntimeError("bug"), KeyError("k"), TypeError("t"), AssertionError()])
def test_bugs_are_not_dressed_up(error):
    assert describe(error, ns(out="x")) is None  # main() re-raises them with their traceback
