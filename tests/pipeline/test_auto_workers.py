"""workers="auto": the usable core count (affinity, cgroup v1/v2 quota), the pure decision, the probe in a Loader."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from feedstock.loaders import ArraySource
from feedstock.pipeline import machine
from feedstock.pipeline.auto import Spread, recommend
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


# ----- the rule, on constructed timings (samples/s per window by worker count) -------------------------
def test_a_tie_inside_the_noise_goes_to_the_fewest_workers():
    # 2 workers have the best median, but 1 worker's median (205) lies inside 2's range (190-230)
    rates = {0: [100, 104, 98], 1: [200, 205, 215], 2: [190, 210, 230]}
    choice = recommend(rates, cores=4, consumer_threads=0)
    assert (choice.best, choice.workers) == (2, 1)
    assert choice.spreads[2] == Spread(210.0, 190.0, 230.0)
    # the same medians with no spread (one window each): the best itself
    assert recommend({n: [statistics.median(r)] for n, r in rates.items()}, cores=4, consumer_threads=0).workers == 2


def test_in_process_only_when_no_worker_count_reaches_its_range():
    assert recommend({0: [1000, 1100, 1050], 1: [400, 420, 410], 2: [600, 650, 640]}, cores=2,
                     consumer_threads=0).workers == 0
    # in-process best by median, but 1 worker's median (1010) is inside its range: workers win the tie
    choice = recommend({0: [1000, 1100, 1050], 1: [990, 1010, 1080]}, cores=2, consumer_threads=0)
    assert (choice.best, choice.workers) == (0, 1)


def test_the_consumer_threads_and_memory_bound_the_eligible_counts():
    rates = {0: [50.0] * 3, 1: [100.0] * 3, 2: [190.0] * 3, 3: [280.0] * 3, 4: [300.0] * 3}
    assert recommend(rates, cores=4, consumer_threads=0).workers == 4
    choice = recommend(rates, cores=4, consumer_threads=1)  # 3 workers + the consumer's thread
    assert choice.workers == 3 and choice.worker_limit == 3 and "not eligible: 4 workers" in choice.reason
    assert recommend(rates, cores=4, consumer_threads=3).workers == 1  # one worker is always allowed
    assert recommend(rates, cores=4, consumer_threads=8).workers == 1
    assert recommend(rates, cores=4, consumer_threads=0, memory_cap=2).workers == 2
    assert recommend(rates, cores=4, consumer_threads=0, memory_cap=0).workers == 0  # slots do not fit
    with pytest.raises(ValueError, match="cores"):
        recommend(rates, cores=0)


def test_the_rule_on_random_timings_keeps_its_promises():
    rng = np.random.default_rng(7)
    for _ in range(400):
        counts = sorted({0, *rng.integers(1, 9, size=rng.integers(1, 5)).tolist()})
        true = {n: float(rng.uniform(50, 500)) for n in counts}
        rates = {n: (true[n] * rng.uniform(0.8, 1.2, size=rng.integers(1, 6))).tolist() for n in counts}
        cores, consumer = int(rng.integers(1, 9)), int(rng.integers(0, 3))
        choice = recommend(rates, cores=cores, consumer_threads=consumer)
        limit = max(1, cores - consumer)
        eligible = [n for n in counts if n <= limit]
        med = {n: float(np.median(rates[n])) for n in counts}
        best = max(eligible, key=lambda n: (med[n], -n))
        low, high = min(rates[best]), max(rates[best])
        assert choice.best == best and choice.workers in eligible
        assert low <= med[choice.workers] <= high  # the recommendation is within the best's measured spread
        fewer = [n for n in eligible if 0 < n < choice.workers]
        assert all(med[n] < low for n in fewer)  # and no fewer workers would have been
        if choice.workers == 0:
            assert all(med[n] < low for n in eligible if n > 0)
        # the windows' order does not matter
        shuffled = {n: list(rng.permutation(r)) for n, r in rates.items()}
        assert recommend(shuffled, cores=cores, consumer_threads=consumer).workers == choice.workers


def test_spread_needs_windows():
    assert Spread.of([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0)
    with pytest.raises(ValueError):
        Spread.of([])


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
    assert stats["workers_auto_reason"] and stats["workers_auto_probe_s"] < 30.0


def test_loader_auto_and_bench_apply_the_same_rule_to_the_same_windows(monkeypatch, no_leaks):
    """Constructed windows fed to both: Loader(workers="auto") and bench's verdict pick the same count."""
    from feedstock.benchtool.verdict import judge
    from feedstock.pipeline import auto as auto_module

    rates = {0: [900.0, 1000.0, 950.0], 1: [940.0, 1010.0, 990.0], 2: [1200.0, 1300.0, 1250.0]}
    calls = []

    def fake(make_loader, counts, **kw):
        calls.append(list(counts))
        return {n: [auto_module.Window(n, 10, int(r), 1.0, 0.0, 0.0) for r in rates[n]] for n in counts}

    monkeypatch.setattr(auto_module, "measure_counts", fake)
    monkeypatch.setattr(machine, "usable_cores", lambda: 3)
    source = ArraySource(data=np.zeros((64, 2), np.float32))
    with Loader(source, batch_size=8, workers="auto") as loader:
        picked = loader.workers
    assert calls == [[0, 1, 2]]  # 3 cores less the consumer's thread: up to 2 workers measured
    verdict = judge({"read": 1e-3, "transforms": 1e-3}, {"read": 1, "transforms": 1}, rates, cores=3)
    assert picked == verdict.workers == verdict.choice.workers == 2
    rates[2] = [980.0, 1000.0, 1400.0]  # 2 workers still best, but their range now holds 1 worker's median
    with Loader(source, batch_size=8, workers="auto") as loader:
        picked = loader.workers
    verdict = judge({"read": 1e-3, "transforms": 1e-3}, {"read": 1, "transforms": 1}, rates, cores=3)
    assert picked == verdict.workers == 1


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
