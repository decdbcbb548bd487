"""The slot ring: ``prefetch`` batch slots in /dev/shm files, created once, pre-faulted, reused.

Each slot is its own file ``feedstock_<owner pid>_<token>_<slot>`` (plus one small
``..._ctl`` file where workers publish the record they are working on). We use
plain files with ``os.open`` + ``mmap`` instead of ``multiprocessing.shared_memory``
because the latter registers every attach with the resource tracker, which then
warns about, and unlinks, segments that child processes merely attached. Only
the owner unlinks while it lives; the pid in the name lets its workers, once they see
it die (SIGTERM, SIGKILL), and any later loader on the host remove the files of a dead
owner (:func:`sweep_stale`; a zombie that is not reaped yet counts as dead).

Pre-faulting: ``posix_fallocate`` makes tmpfs allocate (and zero) every page up
front, so /dev/shm running out is an error at creation instead of a SIGBUS in a
worker, and ``MAP_POPULATE`` fills each process's page tables at map time (the
first touch of a fresh shared page costs ~16x a warm write).
"""
from __future__ import annotations

import errno
import logging
import mmap
import os
import re
import secrets
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ShmSpaceError
from ..spec import ArraySpec

Buffer = Union[mmap.mmap, bytearray, memoryview]  # a slot's memory: shared (mmap) or this process's

log = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
PREFIX = "feedstock"
_ALIGN = 64  # cache line: rows of different fields never share one
_NAME = re.compile(rf"{PREFIX}_(\d+)_[0-9a-f]+_(\d+|ctl|plan)")


@dataclass(frozen=True)
class SlotLayout:
    """Where each field's ``(batch_size, *shape)`` array lives inside one slot."""

    batch_size: int
    fields: Tuple[Tuple[str, Tuple[int, ...], str, int], ...]  # (name, shape, dtype str, offset)
    nbytes: int

    @classmethod
    def of(cls, spec: Mapping[str, ArraySpec], batch_size: int) -> "SlotLayout":
        fields, offset = [], 0
        for name, s in spec.items():
            if not s.fixed:
                raise ValueError(f"field {name!r} has unknown dims {s.shape}; slots need fixed shapes")
            fields.append((name, (batch_size, *(int(d) for d in s.shape if d is not None)), s.dtype.str, offset))
            offset += -(-batch_size * s.nbytes // _ALIGN) * _ALIGN
        return cls(batch_size, tuple(fields), max(offset, _ALIGN))

    def views(self, buffer: Buffer) -> Dict[str, np.ndarray]:
        """Numpy arrays over one slot's buffer (no copy)."""
        return {
            name: np.ndarray(shape, dtype=np.dtype(dtype), buffer=buffer, offset=offset)
            for name, shape, dtype, offset in self.fields
        }


def _path(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def _map(name: str, size: int, *, create: bool) -> mmap.mmap:
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    fd = os.open(_path(name), flags, 0o600)
    try:
        if create:
            os.posix_fallocate(fd, 0, size)
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
    except BaseException:
        if create:  # the file exists from O_CREAT on: a failed fallocate or map must not leave it
            _unlink_all([name])
        raise
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` names a running process (ours or someone else's); a zombie is dead."""
    try:
        os.kill(pid, 0)  # succeeds for a zombie too: it keeps its pid until its parent reaps it
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: its /proc state still tells
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):  # the second: it went between open() and read()
        return True  # reaped since kill() (or hidden by hidepid: then its files are not ours to remove)
    except OSError:
        return False  # no /proc to ask: trust kill()
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")"
    fields = stat.rpartition(b")")[2].split()
    return bool(fields) and fields[0] in (b"Z", b"X")


def owner_of(name: str) -> Optional[int]:
    """The owner pid in a slot file's name (None for names that are not ours)."""
    match = _NAME.fullmatch(name)
    return None if match is None else int(match.group(1))


def sweep_stale(owner: Optional[int] = None) -> List[str]:
    """Unlink slot files whose owner pid is dead (a SIGKILLed or SIGTERMed main process, or a
    zombie); ``owner``: only that owner's files (a worker cleaning up after its dead owner)."""
    removed: List[str] = []
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return removed
    dead: Dict[int, bool] = {}
    for name in names:
        pid = owner_of(name)
        if pid is None or pid == os.getpid() or (owner is not None and pid != owner):
            continue
        if pid not in dead:
            dead[pid] = not pid_alive(pid)
        if not dead[pid]:
            continue
        try:
            os.unlink(_path(name))
            removed.append(name)
        except FileNotFoundError:
            pass  # another process swept it first
        except PermissionError:  # another user's, in sticky /dev/shm: theirs to remove, never our failure
            log.debug("cannot remove %s (another user's)", name)
    if removed:
        log.info("removed %d stale shared-memory files of dead processes: %s", len(removed), removed[:4])
    return removed


def free_bytes(path: Optional[str] = None) -> int:
    """Bytes free on ``path`` (default :data:`SHM_DIR`, the file system holding the slots); OSError when absent."""
    st = os.statvfs(path or SHM_DIR)
    return st.f_bavail * st.f_frsize


def _space_error(free: int, needed: int, slots: int, slot_bytes: int) -> ShmSpaceError:
    mib = 2**20
    return ShmSpaceError(
        f"{SHM_DIR} has {free / mib:.0f} MiB free but the loader needs {needed / mib:.0f} MiB "
        f"({slots} slots x {slot_bytes / mib:.1f} MiB per batch). Lower prefetch or batch_size, "
        f"or give {SHM_DIR} more room (docker: --shm-size=8g; Kubernetes: an emptyDir with "
        "medium: Memory mounted at /dev/shm)."
    )


def check_space(needed: int, *, slots: int, slot_bytes: int) -> None:
    """Fail early, with what to change, when /dev/shm cannot hold the ring."""
    free = free_bytes()
    if needed > free:
        raise _space_error(free, needed, slots, slot_bytes)


class SlotRing:
    """The owner creates the ring; workers :meth:`attach` by name; views are built once."""

    def __init__(self, layout: SlotLayout, buffers: Sequence[Buffer], names: Tuple[str, ...],
                 ctl: Optional[mmap.mmap], ctl_name: Optional[str], owner: bool):
        self.layout, self.names, self.ctl_name, self.owner = layout, names, ctl_name, owner
        self._buffers, self._ctl_buffer = buffers, ctl
        self.slots = [layout.views(b) for b in buffers]
        self.ctl = None if ctl is None else np.ndarray((len(ctl) // 8,), np.int64, buffer=ctl)

    @classmethod
    def create(cls, layout: SlotLayout, slots: int, *, ctl_entries: int = 0) -> "SlotRing":
        """Owner side: sweep stale files, check free space, create and pre-fault ``slots`` slots."""
        sweep_stale()
        ctl_bytes = max(ctl_entries, 1) * 8
        check_space(slots * layout.nbytes + ctl_bytes, slots=slots, slot_bytes=layout.nbytes)
        base = f"{PREFIX}_{os.getpid()}_{secrets.token_hex(4)}"
        names = tuple(f"{base}_{s}" for s in range(slots))
        ctl_name = f"{base}_ctl" if ctl_entries else None
        created: List[str] = []
        try:
            buffers = []
            for name in names:
                buffers.append(_map(name, layout.nbytes, create=True))
                created.append(name)
            ctl = None
            if ctl_name:
                ctl = _map(ctl_name, ctl_bytes, create=True)
                created.append(ctl_name)
        except BaseException as exc:  # also KeyboardInterrupt while a large ring pre-faults
            _unlink_all(created)
            # ENOSPC: another process filled /dev/shm since the check
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                needed = slots * layout.nbytes + ctl_bytes
                raise _space_error(free_bytes(), needed, slots, layout.nbytes) from exc
            raise
        ring = cls(layout, buffers, names, ctl, ctl_name, owner=True)
        if ring.ctl is not None:
            ring.ctl.fill(-1)
        return ring

    @classmethod
    def local(cls, layout: SlotLayout, slots: int = 1) -> "SlotRing":
        """Process-private slots (``workers=0``): same views, no files."""
        buffers = [bytearray(layout.nbytes) for _ in range(slots)]
        return cls(layout, buffers, (), None, None, owner=False)

    @classmethod
    def attach(cls, layout: SlotLayout, names: Tuple[str, ...], ctl_name: Optional[str]) -> "SlotRing":
        """Worker side: map the owner's files (never unlinks them)."""
        buffers = [_map(name, layout.nbytes, create=False) for name in names]
        ctl = _map(ctl_name, os.path.getsize(_path(ctl_name)), create=False) if ctl_name else None
        return cls(layout, buffers, tuple(names), ctl, ctl_name, owner=False)

    def unlink(self) -> None:
        """Remove the files (owner only); live mappings stay valid until closed."""
        if self.owner:
            _unlink_all([*self.names, *([self.ctl_name] if self.ctl_name else [])])
            self.owner = False

    def close(self) -> None:
        """Unlink (owner) and drop our references. The mappings are not closed here: numpy
        views do not pin an mmap's buffer, so closing it under a batch the user still holds
        would turn that batch into a segfault; each mapping goes with its last view."""
        self.unlink()
        self.slots, self.ctl = [], None
        self._buffers, self._ctl_buffer = [], None


def write_blob(data: bytes) -> str:
    """A small owner file holding ``data`` (a worker's start-up plan); its name, for :func:`read_blob`.

    Named like the slots, so the owner's :func:`unlink_blob`, its workers and later sweeps remove it."""
    name = f"{PREFIX}_{os.getpid()}_{secrets.token_hex(4)}_plan"
    fd = os.open(_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        _unlink_all([name])
        raise
    finally:
        os.close(fd)
    return name


def read_blob(name: str) -> bytes:
    with open(_path(name), "rb") as f:
        return f.read()


def unlink_blob(name: str) -> None:
    _unlink_all([name])


def _unlink_all(names: Iterable[str]) -> None:
    for name in names:
        try:
            os.unlink(_path(name))
        except FileNotFoundError:
            pass
