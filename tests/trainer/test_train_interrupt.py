"""No lost work in ``feedstock train``: SIGINT/SIGTERM snapshot the current iteration and ``--resume``
continues it exactly; a failed run (error, full disk) leaves nothing it created, a snapshot write no temp file."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feedstock.cli.demo import write_lmdb
from feedstock.cli.main import main
from feedstock.trainer import snapshot_io
from feedstock.trainer.datasets import load_fashion_mnist
from feedstock.trainer.snapshot_io import read_snapshot

ROOT = Path(__file__).resolve().parents[2]
ITERS = 12
# Sends the signal to itself right after step STOP_AT, through the CLI's own progress callback:
# the same code path as a Ctrl-C in a terminal, at a known iteration.
STOPPER = """
import os, signal, sys
from feedstock.cli import train as t
from feedstock.cli.main import main
at, sig = int(os.environ["STOP_AT"]), int(os.environ["STOP_SIG"])
real = t.progress_bar
def bar(*args, **kwargs):
    b, n = real(*args, **kwargs), [0]
    update = b.update
    def counted(k=1):
        update(k)
        n[0] += k
        if n[0] == at:
            os.kill(os.getpid(), sig)
    b.update = counted
    return b
t.progress_bar = bar
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("interrupt")
    tr, te = load_fashion_mnist()
    write_lmdb(d / "train_lmdb", tr.images[:64], tr.labels[:64], "train")
    write_lmdb(d / "val_lmdb", te.images[:32], te.labels[:32], "val")
    (d / "solver.yaml").write_text("base_lr: 0.01\nmomentum: 0.9\nlr_policy: inv\ngamma: 0.0001\npower: 0.75\n"
                                   "display: 0\nsnapshot: 0\n")
    return d


def argv(d: Path, out: Path, *extra: str) -> list:
    # 64 records in batches of 8, shuffled: 12 iterations cross an epoch boundary
    return ["train", "--model", "lenet", "--train", str(d / "train_lmdb"), "--val", str(d / "val_lmdb"),
            "--solver", str(d / "solver.yaml"), "--iters", str(ITERS), "--batch-size", "8", "--workers", "0",
            "--no-plots", "-q", "--out", str(out), *extra]


def final_state(out: Path, it: int) -> tuple:
    snap = read_snapshot(out / f"snapshot_iter_{it}.npz")
    metrics = json.loads((out / "lenet_metrics.json").read_text())
    return snap.params, snap.history, metrics["train"]["loss"], metrics["test"]["loss"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_snapshots_and_resume_gives_the_uninterrupted_result(data, tmp_path, sig):
    assert main(argv(data, tmp_path / "whole")) == 0
    out = tmp_path / "stopped"
    env = dict(os.environ, PYTHONPATH=str(ROOT), STOP_AT="5", STOP_SIG=str(int(sig)))
    proc = subprocess.run([sys.executable, "-c", STOPPER, *argv(data, out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 128 + int(sig), proc.stderr
    snapshot = out / "snapshot_iter_5.npz"
    assert f"stopped by {signal.Signals(sig).name}: snapshot {snapshot}" in proc.stdout
    assert f"--resume {snapshot}" in proc.stdout
    assert sorted(p.name for p in out.glob("*.npz")) == ["snapshot_iter_5.npz"]
    assert read_snapshot(snapshot).meta["iter"] == 5
    assert main(argv(data, out, "--resume", str(snapshot))) == 0
    params, history, train_loss, test_loss = final_state(out, ITERS)
    want_params, want_history, want_train, want_test = final_state(tmp_path / "whole", ITERS)
    assert params.keys() == want_params.keys() and history.keys() == want_history.keys()
    for name in want_params:
        np.testing.assert_array_equal(params[name], want_params[name], err_msg=name)
        np.testing.assert_array_equal(history[name], want_history[name], err_msg=name)
    assert (train_loss, test_loss) == (want_train, want_test)


def test_a_failed_run_removes_the_folder_it_created(data, tmp_path, monkeypatch, capsys):
    from feedstock.trainer.nn.solver import SGDSolver

    real, steps = SGDSolver.apply_update, []

    def failing(self):
        steps.append(1)
        if len(steps) == 3:
            raise ValueError("boom at step 3")
        return real(self)

    monkeypatch.setattr(SGDSolver, "apply_update", failing)
    out = tmp_path / "a" / "run"
    assert main(argv(data, out)) == 1
    assert "boom at step 3" in capsys.readouterr().err
    assert not out.exists() and not out.parent.exists()  # no empty folders either


def test_a_failed_run_in_its_own_folder_removes_only_what_it_added(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert main(argv(data, out, "--iters", "2")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(snapshot_io.np, "savez", full)
    assert main(argv(data, out, "--iters", "3")) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing added, nothing lost


def test_a_full_disk_while_snapshotting_leaves_no_temporary_file(data, tmp_path, monkeypatch, capsys):
    real = np.savez

    def half_then_full(file, *args, **kwargs):
        real(file, *args, **kwargs)  # bytes on disk, then the disk fills
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(snapshot_io.np, "savez", half_then_full)
    out = tmp_path / "run"
    assert main(argv(data, out)) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.rglob("*.npz")) == [] and list(tmp_path.rglob("*partial*")) == []


def test_snapshot_write_failure_keeps_the_previous_snapshot_file(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    snapshot_io.write_snapshot(path, {"iter": 1}, {"param/w": np.ones(3, np.float32)})
    before = path.read_bytes()

    def interrupted(file, *args, **kwargs):
        file.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(snapshot_io.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        snapshot_io.write_snapshot(path, {"iter": 2}, {"param/w": np.zeros(3, np.float32)})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]
