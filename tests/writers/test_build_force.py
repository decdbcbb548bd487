"""A ``--force`` rebuild builds beside the old database and swaps only on success: a failed one (a bad
file under --strict, Ctrl-C, SIGINT, a full disk) leaves the previous OUT byte-identical."""
from __future__ import annotations

import errno
import hashlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from test_build_helpers import cli_output, cli_process

from feedstock.fixtures.synthetic import make_image_folder
from feedstock.writers.build import builder as build_module
from feedstock.writers.build.builder import BuildOptions, build_lmdb


def tree_digest(root: Path) -> dict:
    """Relative path -> sha256 of every file below ``root`` (names and bytes: byte-identical trees)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def built(tmp_path):
    """A source of 2 classes x 4 images, a good database of it at OUT, and OUT's digest."""
    src = tmp_path / "src"
    make_image_folder(str(src), np.random.default_rng(0), classes=("cat", "dog"), per_class=4, size=(6, 5))
    out = tmp_path / "out"
    code, _, err = cli_output(["build-lmdb", src, out, "-q", "--workers", "0"])
    assert code == 0, err
    return src, out, tree_digest(out)


def leftovers(out: Path) -> list:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name + "."))


def test_strict_rebuild_over_a_bad_file_keeps_the_previous_database(built):
    src, out, before = built
    (src / "dog" / "broken.png").write_bytes(b"not a png")
    code, _, err = cli_output(["build-lmdb", src, out, "--force", "--strict", "-q", "--workers", "0"])
    assert code == 1 and "broken.png" in err
    assert tree_digest(out) == before


def test_a_successful_force_rebuild_replaces_and_leaves_no_work_folders(built):
    src, out, before = built
    sorted((src / "cat").iterdir())[0].unlink()
    code, _, err = cli_output(["build-lmdb", src, out, "--force", "-q", "--workers", "0"])
    assert code == 0, err
    assert tree_digest(out) != before and leftovers(out) == []


def test_ctrl_c_during_a_force_rebuild_keeps_the_previous_database(built):
    src, out, before = built

    def interrupt(_n):
        raise KeyboardInterrupt  # what Ctrl-C raises in the main process, mid-build

    with pytest.raises(KeyboardInterrupt):
        build_lmdb(str(src), str(out), BuildOptions(chunk_size=1, txn_size=1), force=True, progress=interrupt)
    assert tree_digest(out) == before


def test_full_disk_during_a_force_rebuild_keeps_the_previous_database(built, monkeypatch):
    src, out, before = built
    real_put, calls = build_module.LmdbWriter.put, []

    def put(self, key, value):
        calls.append(key)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_put(self, key, value)

    monkeypatch.setattr(build_module.LmdbWriter, "put", put)
    with pytest.raises(OSError, match="No space"):
        build_lmdb(str(src), str(out), BuildOptions(), force=True)
    assert tree_digest(out) == before


def test_sigint_to_a_force_rebuild_process_keeps_the_previous_database(built):
    src, out, before = built
    proc = cli_process(["build-lmdb", src, out, "--force", "--workers", "0", "--txn-size", "1",
                        "--throttle-ms", "200", "-q"])
    try:
        deadline = time.monotonic() + 60
        while not (out.parent / "out.partial" / "build.json").exists():
            assert proc.poll() is None, "the rebuild ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert tree_digest(out) == before


@pytest.mark.parametrize("where", ["cwd", "parent"])
def test_force_never_replaces_the_current_folder_or_an_ancestor(built, monkeypatch, where):
    src, out, before = built
    work = out.parent / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    target = "." if where == "cwd" else ".."
    code, _, err = cli_output(["build-lmdb", src, target, "--force", "-q", "--workers", "0"])
    assert code == 1 and "current folder" in err
    assert (work / "notes.txt").read_text() == "mine" and tree_digest(out) == before


def test_a_symlink_to_the_source_is_refused_as_output(built):
    src, out, _ = built
    link = out.parent / "link"
    link.symlink_to(src)
    code, _, err = cli_output(["build-lmdb", src, link, "--force", "-q", "--workers", "0"])
    assert code == 1 and "source" in err
    assert sorted(p.name for p in src.iterdir()) == ["cat", "dog"]


def test_merge_lmdb_never_replaces_the_current_folder_or_its_shards(built, monkeypatch):
    src, out, before = built
    work = out.parent / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    for target in (".", "..", str(out)):
        code, _, err = cli_output(["merge-lmdb", target, out, "--force", "-q"])
        assert code == 1 and ("current folder" in err or "source" in err), err
    assert (work / "notes.txt").read_text() == "mine" and tree_digest(out) == before
