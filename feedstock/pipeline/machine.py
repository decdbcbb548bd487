"""What this process may use of the machine: cores (affinity and cgroup CPU quota), memory, /dev/shm.

``os.cpu_count()`` counts the host's cores; a container or a ``taskset`` may give
this process far fewer. :func:`usable_cores` takes the smaller of the CPU
affinity mask and the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``), searching this process's own cgroup and its parents
(a parent's quota caps its children). The readers take their file paths as
arguments so tests run them on fixture files.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import List, Optional

from .shm import free_bytes

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"
MEMINFO = "/proc/meminfo"


def parse_cpu_max(text: str, where: str = "cpu.max") -> Optional[float]:
    """cgroup v2 ``cpu.max`` (``"max 100000"`` or ``"QUOTA PERIOD"``) as cores; None = no limit."""
    parts = text.split()
    if not parts or len(parts) > 2:
        raise ValueError(f"{where}: expected 'max|QUOTA [PERIOD]', got {text.strip()!r}")
    if parts[0] == "max":
        return None
    period = parts[1] if len(parts) == 2 else "100000"
    return parse_cfs(parts[0], period, where)


def parse_cfs(quota: str, period: str, where: str = "cpu.cfs_quota_us") -> Optional[float]:
    """cgroup v1 quota and period in microseconds as cores; a negative quota (-1) = no limit."""
    try:
        q, p = int(quota.strip()), int(period.strip())
    except ValueError:
        raise ValueError(f"{where}: expected integer quota and period, got {quota.strip()!r} and "
                         f"{period.strip()!r}") from None
    if q < 0:
        return None
    if p <= 0:
        raise ValueError(f"{where}: period {p} must be positive")
    return q / p


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text()
    except OSError:  # absent controller, no permission: no limit known here
        return None


def _ancestors(root: Path, rel: str) -> List[Path]:
    """``root/rel`` and each parent up to ``root`` (a parent's limit also applies)."""
    parts = [p for p in rel.strip().split("/") if p]
    return [root.joinpath(*parts[:k]) for k in range(len(parts), -1, -1)]


def _v2_limit(root: Path, rel: str) -> Optional[float]:
    limits = []
    for folder in _ancestors(root, rel):
        text = _read(folder / "cpu.max")
        if text is not None:
            value = parse_cpu_max(text, str(folder / "cpu.max"))
            if value is not None:
                limits.append(value)
    return min(limits) if limits else None


def _v1_limit(root: Path, controllers: str, rel: str) -> Optional[float]:
    limits = []
    mounts = [root / controllers, root / "cpu", root / "cpu,cpuacct"]
    for mount in dict.fromkeys(mounts):  # unique, in order
        for folder in _ancestors(mount, rel):
            quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
            if quota is not None and period is not None:
                value = parse_cfs(quota, period, str(folder / "cpu.cfs_quota_us"))
                if value is not None:
                    limits.append(value)
    return min(limits) if limits else None


def cgroup_cpu_limit(*, root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> Optional[float]:
    """The CPU quota (in cores) of this process's cgroup, v2 or v1; None when there is none."""
    text = _read(Path(proc_cgroup))
    base = Path(root)
    if text is None:
        return _v2_limit(base, "/")
    limits = []
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, rel = fields
        if controllers == "":  # v2 unified hierarchy ("0::/path")
            value = _v2_limit(base, rel)
        elif "cpu" in controllers.split(","):
            value = _v1_limit(base, controllers, rel)
        else:
            continue
        if value is not None:
            limits.append(value)
    return min(limits) if limits else None


def affinity_cores() -> int:
    """CPUs this process may run on (its affinity mask); ``os.cpu_count()`` where there is no mask."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and others without sched_getaffinity
        return os.cpu_count() or 1


def usable_cores(*, root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> int:
    """min(affinity, cgroup quota rounded down), at least 1: the cores worth running workers on."""
    cores = affinity_cores()
    quota = cgroup_cpu_limit(root=root, proc_cgroup=proc_cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota + 1e-9)))
    return max(1, cores)


def mem_available(meminfo: str = MEMINFO) -> Optional[int]:
    """Bytes the kernel estimates can be allocated without swapping (``MemAvailable``); None if unknown."""
    text = _read(Path(meminfo))
    for line in (text or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def shm_free(path: Optional[str] = None) -> Optional[int]:
    """Bytes free on the shared-memory file system holding the slots (:data:`.shm.SHM_DIR`); None when absent."""
    try:
        return free_bytes(path)
    except OSError:
        return None


def pss_bytes(pid: int) -> Optional[int]:
    """Proportional set size of a process (``/proc/<pid>/smaps_rollup``); None when unreadable."""
    text = _read(Path(f"/proc/{pid}/smaps_rollup"))
    for line in (text or "").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


def cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU seconds a process has used so far; None when it is gone."""
    text = _read(Path(f"/proc/{pid}/stat"))
    if text is None:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
