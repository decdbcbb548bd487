"""Every class of user error, from the real CLI: one line `feedstock CMD: error: WHAT: WHAT TO DO` naming the
record, file or flag, no traceback; with -v the traceback (a worker's too) comes before that same line."""
from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from feedstock.caffe_pb import array_to_datum
from feedstock.cli.main import main
from feedstock.fixtures.synthetic import make_raw_lmdb
from feedstock.pipeline.sampler import Sampler
from feedstock.writers.lmdb_writer import LmdbWriter

BAD_ROW = 30  # the odd record of the "mixed" and "badlabel" sets; its key ends in row30


def run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "feedstock.cli.main", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def run_main(capsys, *argv: str) -> subprocess.CompletedProcess:
    """``feedstock ARGV`` in this process (cwd: the test's), as a CompletedProcess: the variants of a message
    class that one subprocess run per class already covers (an interpreter start costs seconds under load)."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as e:  # a usage error
        code = int(e.code or 0)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(argv), code, out.out, out.err)


def error_line(done: subprocess.CompletedProcess, command: str) -> str:
    """The one stderr line of a failed command, checked for the shape and no traceback."""
    assert done.returncode != 0, done.stdout[-2000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"feedstock {command}: error: ") and "Traceback" not in done.stderr
    return lines[0]


def verbose_line(done: subprocess.CompletedProcess, command: str) -> str:
    """With -v: the traceback, then the same one line last."""
    assert done.returncode != 0
    assert "Traceback (most recent call last)" in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"feedstock {command}: error: ")
    return last


def _lmdb(path: Path, n: int, shape_of, label_of) -> None:
    rng = np.random.default_rng(0)
    with LmdbWriter(str(path)) as w:
        for i in range(n):
            image = rng.integers(0, 256, shape_of(i)).astype(np.uint8)
            w.put_datum(i, f"row{i}", array_to_datum(image, label_of(i), encoded_false=True))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("messages")
    make_raw_lmdb(str(root / "good"), np.random.default_rng(0), 64, (1, 28, 28), classes=10)
    make_raw_lmdb(str(root / "short"), np.random.default_rng(1), 10, (1, 28, 28), classes=10)
    _lmdb(root / "mixed", 64, lambda i: (1, 40, 30) if i == BAD_ROW else (1, 28, 28), lambda i: i % 10)
    _lmdb(root / "badlabel", 64, lambda i: (1, 28, 28), lambda i: 12 if i == BAD_ROW else i % 10)
    (root / "src.yaml").write_text("source: mixed\n")
    return root


@pytest.fixture()
def here(data: Path, monkeypatch) -> Path:
    monkeypatch.chdir(data)  # in-process runs read the same relative paths
    return data


@pytest.fixture(scope="module")
def snapshot(data: Path) -> Path:
    from feedstock.trainer import train

    report = train("lenet", str(data / "good"), out_dir=data / "run", iters=2, batch_size=16, plots=False)
    path = data / "run" / "lenet_iter_2.npz"
    assert str(path) in report.files
    return path


def test_a_worker_error_names_the_record_that_raised_and_the_option_that_fixes_it(data):
    argv = ("train", "--model", "lenet", "--train", "mixed", "--iters", "4", "--batch-size", "16", "--workers", "2",
            "--no-plots", "--out", "o", "-q")
    line = error_line(run_cli(*argv, cwd=data), "train")
    assert f"row{BAD_ROW}: field 'data' has shape (1, 40, 30), the batch expects (1, 28, 28)" in line
    assert line.count("row") == 1 and "working on" not in line  # that record only, not the worker's latest
    assert "--new-height/--new-width" in line and "--crop-size" in line and "new_height" not in line
    verbose = run_cli(*argv, "-v", cwd=data)
    assert "Worker traceback" in verbose.stderr and "copy_checked" in verbose.stderr  # the worker's frames
    same = functools.partial(re.sub, r"worker \d+, pid \d+", "worker")  # another run, another worker pid
    assert same(verbose_line(verbose, "train")) == same(line)


def test_a_record_outside_any_worker_is_named_too(here, capsys):
    line = error_line(run_main(capsys, "bench", "mixed", "--seconds", "0.3", "-q"), "bench")
    assert f"row{BAD_ROW}: field 'data' has shape (1, 40, 30)" in line and "--crop-size" in line


def test_an_out_of_range_label_names_its_record(data):
    line = error_line(run_cli("train", "--model", "lenet", "--train", "badlabel", "--iters", "4", "--num-classes", "10", "--batch-size",
                              "16", "--workers", "0", "--no-plots", "--out", "o", "-q", cwd=data), "train")
    assert f"row{BAD_ROW}, field 'label': holds 12, expected a class in [0, 10)" in line and "fix that record" in line
    assert "batch" not in line


def test_a_short_set_is_never_told_to_do_what_the_command_did(here, capsys):
    line = error_line(run_cli("train", "--model", "lenet", "--train", "short", "--batch-size", "16", "--no-drop-last",
                              "--no-plots", "--out", "o", "-q", cwd=here), "train")
    assert "10 records give no full batch of --batch-size 16" in line and "lower --batch-size" in line
    assert "drop" not in line.replace("full batches", "")  # training always drops: nothing to offer
    line = error_line(run_main(capsys, "serve", "short", "--batch-size", "16", "--drop-last", "--insecure"), "serve")
    assert line.endswith("lower --batch-size; or keep the short batch with --no-drop-last")
    with pytest.raises(ValueError) as info:  # the library names its arguments
        Sampler(10, batch_size=16, drop_last=True)
    assert str(info.value).endswith("lower batch_size; or keep the short batch with drop_last=False")


def test_a_value_is_named_as_it_was_given(here, capsys):
    line = error_line(run_cli("inspect", "mixed", "--crop-size", "40", cwd=here), "inspect")
    assert line.startswith("feedstock inspect: error: --crop-size 40 is larger than the image (28x28)")
    (here / "crop.yaml").write_text("crop_size: 40\n")
    line = error_line(run_main(capsys, "inspect", "mixed", "--config", "crop.yaml"), "inspect")
    assert "crop_size: 40 is larger" in line and "--crop-size" not in line and "--new-height/--new-width" in line


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_a_damaged_snapshot_is_one_line_naming_it(here, capsys, snapshot, damage):
    raw = bytearray(snapshot.read_bytes())
    if damage == "truncated":
        raw = raw[: len(raw) // 3]
    else:
        raw[len(raw) // 2] ^= 0xFF
    bad = here / f"{damage}.npz"
    bad.write_bytes(bytes(raw))
    predict = ("predict", bad.name, "good", "--out", "p.csv")
    resume = ("train", "--model", "lenet", "--train", "good", "--resume", bad.name, "--iters", "4", "--batch-size",
              "16", "--workers", "0", "--no-plots", "--out", "o", "-q")
    for done, command in ((run_cli(*predict, cwd=here), "predict"), (run_main(capsys, *resume), "train")):
        line = error_line(done, command)
        assert f"{bad.name}: not a readable feedstock snapshot" in line and "truncated or damaged" in line
    verbose_line(run_main(capsys, *predict, "-v"), "predict")


def test_resuming_another_models_snapshot_names_the_file_and_both_models(data, snapshot):
    with np.load(snapshot) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        arrays = {k.replace("param/", "param/mlp_"): z[k] for k in z.files if k != "meta"}
    meta["extra"]["model"] = "otto_mlp"
    np.savez(data / "other.npz", meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    line = error_line(run_cli("train", "--model", "lenet", "--train", "good", "--resume", "other.npz", "--iters", "4",
                              "--batch-size", "16", "--workers", "0", "--no-plots", "--out", "o", "-q", cwd=data),
                      "train")
    assert "other.npz is a snapshot of otto_mlp, not of lenet" in line and "the same --model" in line


def test_config_errors_name_the_file(here, capsys):
    (here / "binary.yaml").write_bytes(b"source: \xd0\x00\xff\xfe" * 20)
    line = error_line(run_cli("inspect", "good", "--config", "binary.yaml", cwd=here), "inspect")
    assert "binary.yaml: not a text (UTF-8) file" in line and "give the YAML file" in line
    (here / "broken.yaml").write_text("crop_size: 4\nmirror: [true,\n")
    line = error_line(run_main(capsys, "inspect", "good", "--config", "broken.yaml"), "inspect")
    assert "broken.yaml: not valid YAML at line 3" in line
    line = error_line(run_main(capsys, "inspect", "good", "--config", "missing.yaml"), "inspect")
    assert "missing.yaml" in line and "check the path" in line
    verbose_line(run_main(capsys, "inspect", "good", "--config", "missing.yaml", "-v"), "inspect")


ALIAS_BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['x'] * 9)}]\n"
                     for p, c in zip([""] + list("abcdefgh"), "abcdefghi"))
BIG = "a" * 1_000_000


def _refused_fast_and_small(run, name: str) -> None:
    started = time.monotonic()
    done = run()
    seconds = time.monotonic() - started
    assert done.returncode != 0, name
    assert len(done.stdout) + len(done.stderr) < 300, (name, done.stderr[:1000])
    assert seconds < 10, (name, seconds)  # the bomb took > 20 s and 1.4 GB; this is about the size
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, name


def test_the_alias_bomb_is_refused_fast_and_small_by_the_real_cli(data):
    assert len(ALIAS_BOMB) < 400 and ALIAS_BOMB.count("*") == 72
    (data / "bomb.yaml").write_text(ALIAS_BOMB)
    _refused_fast_and_small(lambda: run_cli("inspect", "good", "--config", "bomb.yaml", cwd=data), "bomb")


@pytest.mark.parametrize("name,config,argv", [
    ("alias bomb under a stream key", ALIAS_BOMB.replace("i: &i", "mean_value: &i"), ("inspect", "good")),
    ("1 MB source", f"source: {BIG}\n", ("inspect",)),
    ("1 MB mean_file", f"mean_file: {BIG}\n", ("inspect", "good")),
    ("1e5 mean values", f"mean_value: [{', '.join(['1'] * 100_000)}]\n", ("inspect", "good")),
    ("20k --mean-value entries", None, ("inspect", "good", "--mean-value", ",".join(["1"] * 20_000))),
    ("1 MB SOURCE", None, ("inspect", BIG)),
    ("1 MB --mean-file", None, ("inspect", "good", "--mean-file", BIG)),
    ("--seconds=nan", None, ("bench", "good", "--seconds=nan")),
    ("--seconds=inf", None, ("bench", "good", "--seconds=inf")),
    ("--scale=-inf", None, ("inspect", "good", "--scale=-inf")),
    ("--timeout=nan", None, ("serve", "good", "--timeout=nan", "--insecure")),
])
def test_hostile_input_is_refused_fast_and_small(here, capsys, name, config, argv):
    if config is not None:
        (here / "hostile.yaml").write_text(config)
        argv = (*argv, "--config", "hostile.yaml")
    _refused_fast_and_small(lambda: run_main(capsys, *argv), name)


def test_a_config_source_is_every_commands_source_and_a_given_one_wins(here, capsys):
    # src.yaml names the mixed set: its odd record (or its size) is the proof that the config's source was read
    line = error_line(run_cli("inspect", "--config", "src.yaml", "--crop-size", "29", cwd=here), "inspect")
    assert "--crop-size 29 is larger than the image (28x28)" in line
    for argv, command in ((("bench", "--config", "src.yaml", "--seconds", "0.3", "-q"), "bench"),
                          (("train", "--model", "lenet", "--config", "src.yaml", "--iters", "4", "--batch-size", "16",
                            "--workers", "0", "--no-plots", "--out", "o", "-q"), "train"),
                          (("serve", "--config", "src.yaml", "--batch-size", "100", "--drop-last", "--insecure"),
                           "serve")):
        line = error_line(run_main(capsys, *argv), command)
        assert "64 records" in line or f"row{BAD_ROW}" in line, line
    done = run_main(capsys, "inspect", "good", "--config", "src.yaml", "--samples", "2")
    assert done.returncode == 0 and "records: 64" in done.stdout and "good" in done.stdout, done.stderr
    line = error_line(run_main(capsys, "inspect"), "inspect")
    assert "give a SOURCE, or a `source:` key in the --config file" in line
