"""workers="auto": the usable core count (affinity, cgroup v1/v2 quota), the pure decision, the probe in a Loader."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from feedstock.loaders import ArraySource
from feedstock.pipeline import machine
from feedstock.pipeline.auto import Probe, decide
from feedstock.pipeline.loader import Loader

GIB = 2**30


# ----- cgroup parsing on fixture files -------------------------------------------------------------
def test_cpu_max_and_cfs_parse_to_cores():
    assert machine.parse_cpu_max("max 100000\n") is None
    assert machine.parse_cpu_max("150000 100000\n") == 1.5
    assert machine.parse_cpu_max("50000") == 0.5  # period defaults to 100 ms
    assert machine.parse_cfs("-1\n", "100000\n") is None
    assert machine.parse_cfs("200000\n", "100000\n") == 2.0
    with pytest.raises(ValueError, match="cpu.max"):
        machine.parse_cpu_max("lots of cpu please")
    with pytest.raises(ValueError, match="quota"):
        machine.parse_cfs("x", "100000", "quota file")


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_takes_the_tightest_limit_on_the_path(tmp_path):
    root = tmp_path / "cg"
    _write(root / "cpu.max", "max 100000\n")
    _write(root / "a" / "cpu.max", "300000 100000\n")  # the parent's limit caps its children
    _write(root / "a" / "b" / "cpu.max", "max 100000\n")
    _write(tmp_path / "cgroup", "0::/a/b\n")
    assert machine.cgroup_cpu_limit(root=str(root), proc_cgroup=str(tmp_path / "cgroup")) == 3.0
    _write(root / "a" / "b" / "cpu.max", "250000 100000\n")
    assert machine.cgroup_cpu_limit(root=str(root), proc_cgroup=str(tmp_path / "cgroup")) == 2.5


def test_cgroup_v1_quota_and_no_limit(tmp_path):
    root = tmp_path / "cg"
    _write(root / "cpu,cpuacct" / "job" / "cpu.cfs_quota_us", "50000\n")
    _write(root / "cpu,cpuacct" / "job" / "cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "cgroup", "5:memory:/job\n4:cpu,cpuacct:/job\n0::/\n")
    assert machine.cgroup_cpu_limit(root=str(root), proc_cgroup=str(tmp_path / "cgroup")) == 0.5
    _write(root / "cpu,cpuacct" / "job" / "cpu.cfs_quota_us", "-1\n")
    assert machine.cgroup_cpu_limit(root=str(root), proc_cgroup=str(tmp_path / "cgroup")) is None
    # a container sees its own cgroup at the mount root although /proc names the host's path
    _write(root / "cpu" / "cpu.cfs_quota_us", "100000\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "cgroup", "3:cpu:/docker/abc\n")
    assert machine.cgroup_cpu_limit(root=str(root), proc_cgroup=str(tmp_path / "cgroup")) == 1.0


def test_usable_cores_is_the_smaller_of_affinity_and_quota(tmp_path):
    root = tmp_path / "cg"
    _write(tmp_path / "cgroup", "0::/\n")
    _write(root / "cpu.max", "max 100000\n")
    cores = dict(root=str(root), proc_cgroup=str(tmp_path / "cgroup"))
    assert machine.usable_cores(**cores) == len(os.sched_getaffinity(0))
    _write(root / "cpu.max", "150000 100000\n")  # 1.5 cores: one worker's worth
    assert machine.usable_cores(**cores) == 1
    _write(root / "cpu.max", "20000 100000\n")  # a fifth of a core still runs one process
    assert machine.usable_cores(**cores) == 1


def test_meminfo_and_shm_readers(tmp_path):
    _write(tmp_path / "meminfo", "MemTotal:  1000 kB\nMemAvailable:   512 kB\n")
    assert machine.mem_available(str(tmp_path / "meminfo")) == 512 * 1024
    _write(tmp_path / "meminfo", "MemTotal:  1000 kB\n")
    assert machine.mem_available(str(tmp_path / "meminfo")) is None
    assert machine.shm_free(str(tmp_path / "nowhere")) is None
    assert machine.pss_bytes(os.getpid()) > 0


# ----- the decision, from constructed probes -------------------------------------------------------
def test_cheap_batches_stay_in_process():
    # in-process 10k batches/s; a worker 3.3k/s, hand-off caps all workers at 5k/s
    probe = Probe(inline_s=1e-4, worker_s=3e-4, worker_cpu_s=1e-4, handoff_s=2e-4)
    choice = decide(probe, cores=2, mem_avail=None, shm_free=None)
    assert choice.workers == 0
    assert choice.predicted[0] == pytest.approx(10_000)
    assert choice.predicted[1] == pytest.approx(1 / 3e-4)
    assert choice.predicted[2] == pytest.approx(5_000)
    assert "in-process" in choice.reason


def test_heavy_batches_use_every_core_and_no_more():
    probe = Probe(inline_s=0.1, worker_s=0.1, worker_cpu_s=0.1, handoff_s=3e-4)
    choice = decide(probe, cores=4, mem_avail=None, shm_free=None)
    assert choice.workers == 4 and max(choice.predicted) == 4
    assert choice.predicted[3] == pytest.approx(30.0)
    assert choice.predicted[4] == pytest.approx(4 / 0.1003)
    assert "4 usable cores" in choice.reason


def test_workers_win_a_near_tie_with_in_process():
    # in-process 10 batches/s; two workers 9.985/s: close, and workers let the trainer compute meanwhile
    probe = Probe(inline_s=0.1, worker_s=0.2, worker_cpu_s=0.2, handoff_s=3e-4)
    choice = decide(probe, cores=2, mem_avail=None, shm_free=None)
    assert choice.workers == 2
    assert choice.predicted[2] == pytest.approx(2 / 0.2003)


def test_memory_caps_the_count():
    probe = Probe(inline_s=0.1, worker_s=0.1, worker_cpu_s=0.1, handoff_s=3e-4, worker_bytes=GIB, slot_bytes=0)
    choice = decide(probe, cores=4, mem_avail=int(2.5 * GIB), shm_free=None)  # 80% of 2.5 GiB: 2 workers
    assert choice.workers == 2
    assert "memory allows 2" in choice.reason


def test_slots_that_do_not_fit_dev_shm_mean_in_process():
    probe = Probe(inline_s=0.1, worker_s=0.1, worker_cpu_s=0.1, handoff_s=3e-4, slot_bytes=GIB)
    choice = decide(probe, cores=4, mem_avail=None, shm_free=GIB // 2)
    assert choice.workers == 0
    assert "/dev/shm" in choice.reason


def test_decide_rejects_zero_cores():
    with pytest.raises(ValueError, match="cores"):
        decide(Probe(1e-3, 1e-3, 1e-3, 1e-4), cores=0, mem_avail=None, shm_free=None)


# ----- the probe in a Loader ------------------------------------------------------------------------
def test_loader_auto_reports_its_choice_and_gives_the_same_batches(no_leaks):
    rng = np.random.default_rng(0)
    source = ArraySource(data=rng.random((300, 5), dtype=np.float32), label=np.arange(300))
    with Loader(source, batch_size=32, workers="auto", seed=3, shuffle=True, drop_last=True) as auto, \
            Loader(source, batch_size=32, workers=0, seed=3, shuffle=True, drop_last=True) as inline:
        for a, b in zip(auto, inline):
            assert all(np.array_equal(a[k], b[k]) for k in b)
        stats = auto.stats()
    assert stats["workers_auto"] == auto.workers
    assert 0 <= auto.workers <= machine.usable_cores()
    assert stats["workers_auto_reason"] and stats["workers_auto_probe_s"] < 3.0


SCRIPT = textwrap.dedent("""
    import os, numpy as np
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from feedstock.pipeline.machine import usable_cores
    from feedstock.pipeline.loader import Loader
    from feedstock.loaders import ArraySource
    from feedstock.transforms.base import Transform

    class Busy(Transform):  # ~0.3 ms of CPU per sample: workers would pay off on more cores
        def __call__(self, sample, rng):
            x = sample["data"]
            for _ in range(30):
                x = np.sqrt(x * x + 1.0)
            return dict(sample, data=x.astype(np.float32))
        def output_spec(self, spec):
            return spec

    source = ArraySource(data=np.ones((400, 256), np.float32), label=np.arange(400))
    with Loader(source, [Busy()], batch_size=16, workers="auto", shuffle=True, drop_last=True) as loader:
        next(iter(loader))
        print(usable_cores(), loader.workers, loader.stats()["workers_auto_cores"])
""")


def test_one_core_of_affinity_means_at_most_one_worker():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cores, workers, reported = map(int, out.stdout.split())
    assert cores == 1 and reported == 1
    assert workers <= 1
