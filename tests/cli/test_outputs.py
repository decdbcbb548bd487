"""Own only your output: every writing command checks its arguments first, never writes over the
current folder, an ancestor of it, or its inputs, replaces only what it recognises, and cleans up on failure."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from feedstock import outputs
from feedstock.cli.demo import write_lmdb
from feedstock.cli.main import main
from feedstock.trainer.datasets import load_fashion_mnist


def snapshot_of(root: Path) -> dict:
    """Every file below ``root`` with its bytes (what "nothing touched" compares)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def notes(tmp_path, monkeypatch):
    """A user's folder with a file of their own, as the current folder."""
    work = tmp_path / "work"
    (work / "notes").mkdir(parents=True)
    (work / "notes" / "my_notes.txt").write_text("precious")
    (work / "todo.txt").write_text("also precious")
    monkeypatch.chdir(work)
    return work


# ----- the rules ------------------------------------------------------------------------------

@pytest.mark.parametrize("out", [".", "..", "./", "notes/..", "../work"])
def test_the_current_folder_and_its_ancestors_are_never_outputs(notes, out):
    with pytest.raises(ValueError, match="current folder"):
        outputs.check_output(out)


def test_outputs_that_are_or_hold_inputs_are_refused_through_symlinks_and_dotdot(notes):
    (notes / "data").mkdir()
    (notes / "alias").symlink_to(notes / "data")
    for out, data in [("data", "data"), ("alias", "data"), ("data", "alias/../data"), ("data", "data/x.csv"),
                      ("notes/../data", str(notes / "data")), ("alias/../data", "data/x.csv")]:
        with pytest.raises(ValueError, match="input"):
            outputs.check_output(out, inputs=[data])
    outputs.check_output("fresh", inputs=["data"])  # a new folder beside the inputs is fine


def test_a_staged_folder_replaces_only_its_own_and_only_on_success(notes):
    stage = outputs.StagedDir("out", "demo")
    with stage:
        Path(stage.path, "a.txt").write_text("1")
    assert sorted(os.listdir("out")) == [outputs.MARKER, "a.txt"]
    with pytest.raises(RuntimeError), outputs.StagedDir("out", "demo") as again:
        Path(again.path, "b.txt").write_text("2")
        raise RuntimeError("failed run")
    assert sorted(os.listdir("out")) == [outputs.MARKER, "a.txt"] and not os.path.exists("out.partial")
    with pytest.raises(FileExistsError, match="not a feedstock demo output"):
        outputs.StagedDir("notes", "demo")
    with pytest.raises(FileExistsError, match="not a feedstock train output"):
        outputs.StagedDir("out", "train")  # another command's output is not this one's


def test_an_updated_folder_loses_only_what_the_failed_run_added(notes):
    Path("run").mkdir()
    outputs.write_marker("run", "train")
    Path("run/old.npz").write_bytes(b"old")
    with pytest.raises(OSError), outputs.UpdateDir("run", "train"):
        Path("run/new.npz").write_bytes(b"new")
        Path("run/sub").mkdir()
        raise OSError(28, "No space left on device")
    assert sorted(os.listdir("run")) == [outputs.MARKER, "old.npz"]


def test_an_atomic_file_leaves_nothing_on_failure_and_keeps_the_old_file(notes):
    with pytest.raises(KeyboardInterrupt), outputs.atomic_file("new/deeper/f.csv") as tmp:
        Path(tmp).write_text("half")
        raise KeyboardInterrupt
    assert not Path("new").exists()
    with pytest.raises(ValueError), outputs.atomic_file("todo.txt") as tmp:
        Path(tmp).write_text("half")
        raise ValueError
    assert Path("todo.txt").read_text() == "also precious" and sorted(os.listdir()) == ["notes", "todo.txt"]


# ----- demo -----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["--out", "notes/", "--batch-size", "0"], "--batch-size 0"),
    (["--out", "notes", "--iters", "-1"], "--iters -1"),
    (["--out", "notes"], "not a feedstock demo output"),
    (["--out", "."], "current folder"),
    (["--out", ".."], "current folder"),
])
def test_demo_checks_everything_before_it_deletes_anything(notes, capsys, argv, message):
    before = snapshot_of(notes.parent)
    assert main(["demo", *argv]) == 1
    assert message in capsys.readouterr().err
    assert snapshot_of(notes.parent) == before


# ----- predict --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    d = tmp_path_factory.mktemp("lenet")
    tr, _ = load_fashion_mnist()
    write_lmdb(d / "lmdb", tr.images[:16], tr.labels[:16], "lmdb")
    assert main(["train", "--model", "lenet", "--train", str(d / "lmdb"), "--iters", "1", "--batch-size", "8",
                 "--workers", "0", "--no-plots", "-q", "--out", str(d / "run")]) == 0
    return d, next((d / "run").glob("*.npz"))


def test_predict_never_writes_over_its_data_or_snapshot(lenet, tmp_path, capsys):
    d, snap = lenet
    csv_data = tmp_path / "data.csv"
    csv_data.write_text("id,x\n1,2\n")
    before = snapshot_of(d)
    for data, out in [(d / "lmdb", d / "lmdb"), (d / "lmdb", d / "lmdb" / "data.mdb"), (d / "lmdb", snap),
                      (d / "lmdb", d)]:
        assert main(["predict", str(snap), str(data), "--out", str(out)]) == 1
        assert "input" in capsys.readouterr().err
    assert snapshot_of(d) == before


def test_predict_creates_its_output_folder_and_cleans_it_on_failure(lenet, tmp_path, monkeypatch):
    d, snap = lenet
    out = tmp_path / "new" / "dir" / "p.csv"
    assert main(["predict", str(snap), str(d / "lmdb"), "--out", str(out)]) == 0
    assert out.is_file() and (tmp_path / "new/dir/p.metrics.json").is_file()
    from feedstock.trainer import plots

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plots, "plot_confusion", broken)
    out2 = tmp_path / "other" / "q.csv"
    assert main(["predict", str(snap), str(d / "lmdb"), "--out", str(out2)]) == 1
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["q.csv"]  # no half-written scores
    assert not list(tmp_path.rglob(".*partial*"))


# ----- the small writers ----------------------------------------------------------------------

def test_compute_mean_refuses_its_database_and_folders(lenet, tmp_path, capsys):
    d, _ = lenet
    before = snapshot_of(d)
    for argv in ([str(d / "lmdb"), str(d / "lmdb" / "data.mdb")], [str(d / "lmdb"), str(tmp_path)],
                 [str(d / "lmdb"), str(tmp_path / "m.binaryproto"), "--npy", str(tmp_path / "m.binaryproto")]):
        assert main(["compute-mean", *argv, "-q"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("input" in err or "directory" in err or "same file" in err), err
    assert snapshot_of(d) == before and not list(tmp_path.iterdir())
    assert main(["compute-mean", str(d / "lmdb"), str(tmp_path / "a/m.binaryproto"), "--npy",
                 str(tmp_path / "m.npy"), "-q"]) == 0
    assert np.load(tmp_path / "m.npy").shape == (1, 28, 28)


def test_keygen_never_overwrites_keys_without_force(tmp_path, capsys):
    pytest.importorskip("zmq")
    keys = tmp_path / "keys"
    assert main(["keygen", str(keys)]) == 0
    before = snapshot_of(keys)
    assert main(["keygen", str(keys)]) == 1
    assert "never overwrites keys" in capsys.readouterr().err
    assert main(["keygen", str(keys), "--name", "other", "--name", "client"]) == 1  # checked before any write
    assert snapshot_of(keys) == before
    assert main(["keygen", str(keys), "--force"]) == 0
    assert snapshot_of(keys) != before


def test_inspect_grid_and_bench_plot_check_their_file_first(lenet, tmp_path, capsys):
    d, _ = lenet
    before = snapshot_of(d)
    assert main(["inspect", str(d / "lmdb"), "--grid", str(d / "lmdb" / "data.mdb")]) == 1
    assert "input" in capsys.readouterr().err
    assert main(["inspect", str(d / "lmdb"), "--grid", str(tmp_path / "grid.unknown")]) == 1
    assert "cannot write this file type" in capsys.readouterr().err
    assert main(["bench", str(d / "lmdb"), "--plot", str(d / "lmdb")]) == 1
    assert "is a directory" in capsys.readouterr().err
    assert snapshot_of(d) == before and not list(tmp_path.iterdir())


def test_train_refuses_folders_it_does_not_own(lenet, notes, capsys):
    d, _ = lenet
    before = snapshot_of(notes)
    base = ["train", "--model", "lenet", "--train", str(d / "lmdb"), "--iters", "1", "--batch-size", "8",
            "--workers", "0", "--no-plots", "-q"]
    for out, message in [("notes", "not a feedstock train output"), (".", "current folder"),
                         (str(d), "input"), ("..", "current folder")]:
        assert main([*base, "--out", out]) == 1
        assert message in capsys.readouterr().err
    assert snapshot_of(notes) == before
    assert main([*base, "--out", "notes", "--force"]) == 0  # told to: writes beside the user's file
    assert (notes / "notes" / "my_notes.txt").read_text() == "precious"


def test_a_device_named_as_output_is_written_never_replaced():
    import stat

    with outputs.atomic_file("/dev/null") as target:
        assert target == "/dev/null"
        Path(target).write_text("discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_demo_replaces_its_own_output_only_when_the_new_run_succeeds(notes, monkeypatch, capsys):
    argv = ["demo", "--out", "demo-out", "--iters", "1", "--batch-size", "8", "--workers", "0"]
    assert main(argv) == 0
    assert (notes / "demo-out" / outputs.MARKER).is_file() and (notes / "demo-out" / "train_lmdb").is_dir()
    assert "wrote demo-out/" in capsys.readouterr().out  # the published paths, not the work folder's
    before = snapshot_of(notes / "demo-out")
    import feedstock.trainer as trainer

    def failing(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trainer, "train", failing)
    assert main(argv) == 1
    assert snapshot_of(notes / "demo-out") == before
    assert sorted(os.listdir(notes)) == ["demo-out", "notes", "todo.txt"]


def test_train_checks_its_predictions_file_before_training(lenet, tmp_path, capsys):
    d, _ = lenet
    before = snapshot_of(d)
    for target in (d / "lmdb" / "data.mdb", d / "lmdb", tmp_path):
        assert main(["train", "--model", "lenet", "--train", str(d / "lmdb"), "--iters", "1", "--batch-size", "8",
                     "--workers", "0", "--no-plots", "-q", "--out", str(tmp_path / "run"), "--test", str(d / "lmdb"),
                     "--predict", str(target)]) == 1
        err = capsys.readouterr().err
        assert "--predict" in err and err.count("\n") == 1
    assert snapshot_of(d) == before and not (tmp_path / "run").exists()
