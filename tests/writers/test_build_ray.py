"""build-lmdb --engine ray: Ray Data partitions merged into the bytes of the local engine's build.

Runs on one local Ray instance (2 CPUs) started once for the module; skipped
when Ray Data (the ``feedstock[ray]`` extra) is not installed.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data")  # the [ray] extra: ray[data] with pyarrow and pandas

import ray  # noqa: E402
from test_build_helpers import read_db  # noqa: E402

from feedstock.cli.main import main  # noqa: E402
from feedstock.errors import RecordError, WorkerError  # noqa: E402
from feedstock.fixtures.synthetic import make_image_folder, make_otto_csv  # noqa: E402
from feedstock.pipeline.shm import pid_alive  # noqa: E402
from feedstock.writers.build.builder import BuildOptions, build_lmdb  # noqa: E402
from feedstock.writers.build.on_ray import build_lmdb_ray, default_partitions, parts_path  # noqa: E402

# Ray Data's context copy touches its own deprecated fields; nothing of ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


def _descendants(pid: int) -> set:
    """Every live process below ``pid`` (read from /proc, as Ray's processes are not multiprocessing children)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def _ray_processes() -> set:
    """Our Ray processes: below this process, named after Ray (not multiprocessing's resource tracker)."""
    return {p for p in _descendants(os.getpid()) if "ray" in _cmdline(p)}


def _assert_gone(pids: set) -> None:
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    left = {p: _cmdline(p) for p in pids if pid_alive(p)}
    assert not left, f"Ray processes left running: {left}"


def _our_shm() -> set:
    """/dev/shm entries of this process or of Ray (the conftest check would also count other test runs' leftovers)."""
    names = os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []
    return {n for n in names if n.startswith(f"feedstock_{os.getpid()}_") or "ray" in n or "plasma" in n}


def short_temp() -> str:
    """Ray's temp dir, removed by the caller: short (/tmp/fsray...) as its socket paths must fit 108 bytes."""
    return tempfile.mkdtemp(prefix="fsray")


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module; afterwards none of its processes may be left."""
    temp, shm_before = short_temp(), _our_shm()
    ray.init(num_cpus=2, _temp_dir=temp, include_dashboard=False, object_store_memory=80 * 2**20,
             logging_level=logging.WARNING)
    ours: set = set()
    try:
        yield
    finally:
        ours = _ray_processes()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    assert ours, "found no Ray process to watch"
    _assert_gone(ours)
    assert _our_shm() - shm_before == set(), "/dev/shm entries left"


def snapshot(root: Path) -> dict:
    """A build as data: each LMDB as its (key, value) list in key order, every other file as bytes."""
    out = {}
    for path in [root, *sorted(root.rglob("*"))]:
        rel = str(path.relative_to(root))
        if path.is_dir() and (path / "data.mdb").is_file():
            out[rel] = read_db(path)
        elif path.is_file() and path.suffix != ".mdb":
            out[rel] = path.read_bytes()
    return out


def image_folder(root: Path, per_class: int, corrupt: bool = True) -> Path:
    rng = np.random.default_rng(11)
    make_image_folder(str(root), rng, classes=("cat", "dog", "fox"), per_class=per_class, size=(14, 18))
    if corrupt:
        (root / "dog" / "bad.png").write_bytes(b"\x89PNG not really")
    return root


def both(src: Path, tmp: Path, options: BuildOptions, **ray_kwargs):
    """(local build snapshot, ray build snapshot, ray report, progress calls, on_total calls)."""
    build_lmdb(str(src), str(tmp / "local"), options)
    calls, totals = [], []
    report = build_lmdb_ray(str(src), str(tmp / "ray"), options, progress=calls.append,
                            on_total=lambda *a: totals.append(a), **ray_kwargs)
    assert not Path(parts_path(str(tmp / "ray"))).exists()  # work folder removed on success
    return snapshot(tmp / "local"), snapshot(tmp / "ray"), report, calls, totals


def test_default_partitions_grow_with_records_up_to_four_per_cpu():
    assert default_partitions(1, 2) == 1
    assert default_partitions(256, 2) == 1 and default_partitions(257, 2) == 2
    assert default_partitions(2000, 2) == 8  # ceil(2000/256) = 8 = 4 per CPU
    assert default_partitions(1_281_167, 64) == 256
    assert default_partitions(10, 0) == 1


def test_bad_arguments_are_refused_before_ray_starts(tmp_path):
    src = image_folder(tmp_path / "imgs", 1, corrupt=False)
    with pytest.raises(ValueError, match="partitions=0"):
        build_lmdb_ray(str(src), str(tmp_path / "o"), BuildOptions(), partitions=0)
    with pytest.raises(ValueError, match="shard=.*partitions the build itself"):
        build_lmdb_ray(str(src), str(tmp_path / "o"), BuildOptions(shard=(0, 2)))
    with pytest.raises(ValueError, match="exclude each other"):
        build_lmdb_ray(str(src), str(tmp_path / "o"), BuildOptions(), force=True, resume=True)


def test_missing_ray_names_the_extra(tmp_path, monkeypatch, capsys):
    src = image_folder(tmp_path / "imgs", 1, corrupt=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'feedstock\[ray\]'"):
        build_lmdb_ray(str(src), str(tmp_path / "o"), BuildOptions())
    assert main(["build-lmdb", str(src), str(tmp_path / "o"), "--engine", "ray", "-q"]) == 1
    assert "feedstock[ray]" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_local_instance_is_started_and_shut_down_when_none_ispid_alive(tmp_path):
    if ray.is_initialized():
        pytest.skip("runs before the module's Ray instance starts (file order)")
    src = image_folder(tmp_path / "imgs", 2, corrupt=False)
    temp = short_temp()
    seen = []
    try:
        report = build_lmdb_ray(str(src), str(tmp_path / "ray"), BuildOptions(workers=1), partitions=2,
                                progress=lambda n: seen.append(_ray_processes()),
                                init_kwargs={"_temp_dir": temp, "object_store_memory": 80 * 2**20})
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert report.workers == 1 and not ray.is_initialized()  # num_cpus=workers, then ray.shutdown()
    assert seen and seen[0]
    _assert_gone(set().union(*seen))
    build_lmdb(str(src), str(tmp_path / "local"), BuildOptions())
    assert snapshot(tmp_path / "ray") == snapshot(tmp_path / "local")


def test_image_folder_resize_jpg_shuffle_is_byte_identical(ray_local, tmp_path):
    src = image_folder(tmp_path / "imgs", 8)  # 24 images + 1 unreadable (skipped, listed)
    options = BuildOptions(resize_height=10, resize_width=12, encoding="jpg", shuffle=True, seed=7, mean=True,
                           workers=2)
    local, remote, report, calls, totals = both(src, tmp_path, options, partitions=3)
    assert remote == local
    assert set(local) == {".", "build.json", "labels.txt", "skipped.txt", "mean.npy", "mean.binaryproto"}
    assert len(local["."]) == 24 and b"dog/bad.png" in local["skipped.txt"]
    assert totals == [(25, 0)] and sorted(calls) == [8, 8, 9]  # shards [0,8) [8,16) [16,25)
    assert report.processed == 25 and len(report.skipped) == 1 and report.workers == 2
    np.testing.assert_array_equal(report.mean, np.load(tmp_path / "local" / "mean.npy"))


def test_otto_csv_with_default_partitions_is_byte_identical(ray_local, tmp_path):
    _, labels = make_otto_csv(str(tmp_path / "otto.csv"), np.random.default_rng(3), rows=600, features=93)
    options = BuildOptions(shuffle=True, seed=1, mean=True)
    local, remote, report, calls, _ = both(tmp_path / "otto.csv", tmp_path, options)
    assert remote == local
    assert sorted(calls) == [200, 200, 200]  # default: ceil(600 / 256) = 3 partitions on 2 CPUs
    keys = [k for k, _ in local["."]]
    assert len(keys) == 600 and keys[0].startswith(b"00000000_") and keys[-1].startswith(b"00000599_")
    assert sorted(int(k.split(b"_")[1]) for k in keys) == list(range(1, 601))  # every CSV id once
    assert report.class_names == [f"Class_{c}" for c in range(1, 10)] and len(set(labels)) == 9


def test_val_split_with_more_partitions_than_val_records(ray_local, tmp_path):
    src = image_folder(tmp_path / "imgs", 6, corrupt=False)  # per class round(6 * 0.2) = 1 val record
    options = BuildOptions(val_fraction=0.2, shuffle=True, seed=5, mean=True)
    local, remote, _, calls, _ = both(src, tmp_path, options, partitions=5)
    assert remote == local
    assert len(local["train_lmdb"]) == 15 and len(local["val_lmdb"]) == 3
    assert sorted(calls) == [3, 3, 4, 4, 4]  # train 3,3,3,3,3 + val 0,0,1,1,1


def test_strict_error_names_the_file_and_resume_reuses_the_parts(ray_local, tmp_path):
    src = image_folder(tmp_path / "imgs", 4)
    out = tmp_path / "ray"
    options = BuildOptions(strict=True, resize_height=8, resize_width=8, encoding="png")
    with pytest.raises(RecordError, match=r"dog/bad\.png: cannot decode") as info:
        build_lmdb_ray(str(src), str(out), options, partitions=3)
    assert isinstance(info.value.__cause__, WorkerError) and "Traceback" in str(info.value.__cause__)
    assert not out.exists() and (tmp_path / "ray.parts" / "ray.json").is_file()  # kept for --resume
    with pytest.raises(FileExistsError, match="--resume"):
        build_lmdb_ray(str(src), str(out), options, partitions=3)
    with pytest.raises(ValueError, match="cannot resume.*seed"):
        build_lmdb_ray(str(src), str(out), BuildOptions(**{**options.__dict__, "seed": 9}), resume=True)
    shutil.copyfile(src / "cat" / "000.png", src / "dog" / "bad.png")  # fixed: same names, same plan
    report = build_lmdb_ray(str(src), str(out), options, resume=True)
    assert report.resumed and not (tmp_path / "ray.parts").exists()
    build_lmdb(str(src), str(tmp_path / "local"), options)
    assert snapshot(out) == snapshot(tmp_path / "local") and len(snapshot(out)["."]) == 13


def test_cli_engine_ray_matches_the_local_cli(ray_local, tmp_path, capsys):
    src = image_folder(tmp_path / "imgs", 5)
    args = ["--resize", "9x11", "--encode-type", "jpg", "--val-fraction", "0.25", "--seed", "2", "--shuffle", "-q"]
    assert main(["build-lmdb", str(src), str(tmp_path / "local"), *args]) == 0
    assert main(["build-lmdb", str(src), str(tmp_path / "ray"), "--engine", "ray", "--partitions", "2", *args]) == 0
    assert "wrote " + str(tmp_path / "ray") in capsys.readouterr().out
    assert snapshot(tmp_path / "ray") == snapshot(tmp_path / "local")
    for extra, message in ((["--address", "auto"], "--address applies to --engine ray only"),
                           (["--partitions", "2"], "--partitions applies to --engine ray only"),
                           (["--engine", "ray", "--shard", "0/2"], "--shard applies to --engine local")):
        assert main(["build-lmdb", str(src), str(tmp_path / "x"), *extra, "-q"]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_address_connects_a_second_driver_to_the_running_cluster(ray_local, tmp_path):
    src = image_folder(tmp_path / "imgs", 4)
    address = ray.get_runtime_context().gcs_address
    args = ["--shuffle", "--seed", "4", "--mean", "-q"]
    done = subprocess.run([sys.executable, "-m", "feedstock.cli.main", "build-lmdb", str(src), str(tmp_path / "ray"),
                           "--engine", "ray", "--address", address, "--partitions", "3", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert main(["build-lmdb", str(src), str(tmp_path / "local"), "--workers", "0", *args]) == 0
    assert snapshot(tmp_path / "ray") == snapshot(tmp_path / "local")
    assert ray.is_initialized()  # the other driver's disconnect left the cluster (ours) running


def test_output_and_parts_inside_the_source_are_never_scanned(ray_local, tmp_path):
    src = image_folder(tmp_path / "S", 4)  # dog/bad.png: --strict stops the build, OUT.parts stays
    out = src / "a_out"  # a_out, a_out.parts would sort before every class and shift the labels
    options = BuildOptions(strict=True)
    with pytest.raises(RecordError, match=r"dog/bad\.png"):
        build_lmdb_ray(str(src), str(out), options, partitions=2)
    assert (src / "a_out.parts" / "ray.json").is_file()
    shutil.copyfile(src / "cat" / "000.png", src / "dog" / "bad.png")
    build_lmdb_ray(str(src), str(out), options, resume=True)
    build_lmdb_ray(str(src), str(out), options, partitions=3, force=True)
    build_lmdb(str(src), str(tmp_path / "local"), options)
    assert snapshot(out) == snapshot(tmp_path / "local")
    assert (out / "labels.txt").read_text() == "cat\ndog\nfox\n"
    with pytest.raises(ValueError, match="is the source"):
        build_lmdb_ray(str(src), str(src), options, force=True)
    with pytest.raises(ValueError, match="holds 4 of its images"):
        build_lmdb_ray(str(src), str(src / "cat"), options, force=True)
    assert len(list(src.rglob("*.png"))) == 13  # nothing of the source deleted (12 + the fixed bad.png)
