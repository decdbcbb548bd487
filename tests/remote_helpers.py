"""Remote feed test helpers: `feedstock serve` processes on loopback, in-process servers, local references."""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from feedstock.cli.main import build_parser
from feedstock.cli.serve import build_loader
from feedstock.remote import FeedServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_READY = re.compile(r"^serving .* at (\S+)$")


class ServeProcess:
    """A `feedstock serve` subprocess; ``endpoint`` once it printed that it serves."""

    def __init__(self, args: Sequence[str], *, bind: str = "tcp://127.0.0.1:*", wait: float = 60.0):
        cmd = [sys.executable, "-m", "feedstock.cli.main", "serve", *args, "--bind", bind]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: List[str] = []
        self.endpoint = self._wait_ready(wait)

    def _wait_ready(self, wait: float) -> str:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.5)
            if ready:
                line = self.proc.stderr.readline()
                if not line:
                    break
                self.lines.append(line.rstrip())
                m = _READY.match(line.strip())
                if m:
                    threading.Thread(target=self._drain, daemon=True).start()  # keep the pipe from filling
                    return m.group(1)
        self.kill()
        raise RuntimeError("feedstock serve did not start:\n" + "\n".join(self.lines))

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(30)

    def stop(self) -> int:
        """SIGTERM, as an operator would; the exit status."""
        self.kill(signal.SIGTERM)
        return self.proc.returncode


class ThreadServer:
    """A FeedServer of ``loader`` run by a thread of this process (loaders here use workers=0)."""

    def __init__(self, loader, **kwargs):
        self.server = FeedServer(loader, bind=kwargs.pop("bind", "tcp://127.0.0.1:*"), **kwargs)
        self.endpoint = self.server.endpoint
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.stop()
        self.thread.join(30)
        self.server.close()


def serve_args(src: str, *extra: str) -> List[str]:
    """Settings with random crop and mirror, so per-sample random draws are part of what is compared."""
    return [src, "--batch-size", "8", "--crop-size", "12", "--mirror", "--shuffle", "--seed", "7",
            "--mean-value", "10,20,30", "--scale", "0.5", "--workers", "1", *extra]


def local_loader(args: Sequence[str], **overrides):
    """The Loader `feedstock serve ARGS` runs, in this process (workers=0), as the reference stream."""
    ns = build_parser().parse_args(["serve", *args, "--workers", "0"])
    for k, v in overrides.items():
        setattr(ns, k, v)
    return build_loader(ns)[0]


def copies(batches: Iterator[Dict[str, np.ndarray]], limit: Optional[int] = None) -> List[Dict[str, np.ndarray]]:
    out = []
    for batch in batches:
        out.append({k: np.array(v, copy=True) for k, v in batch.items()})
        if limit is not None and len(out) == limit:
            break
    return out


def assert_same_batches(got: List[Dict[str, np.ndarray]], want: List[Dict[str, np.ndarray]]) -> None:
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert sorted(a) == sorted(b), i
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, (i, k)
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"batch {i} field {k}")
