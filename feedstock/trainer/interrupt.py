"""Stop requests for a training run: SIGINT/SIGTERM end it with a snapshot (Caffe's ``caffe train`` does)."""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Callable, Dict, Optional, Sequence, Union

# what signal.signal returns and takes back: a handler, SIG_DFL/SIG_IGN, or None (not set from Python)
Handler = Union[Callable[[int, Optional[FrameType]], object], int, None]


class StopSignals:
    """While entered, SIGINT/SIGTERM only record a request (``stop()`` then says True); the training
    loop snapshots and ends after the current step. The first signal puts the previous handlers
    back, so a second Ctrl-C interrupts at once. Outside the main thread it installs nothing."""

    def __init__(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.signals = tuple(signals)
        self.received: Optional[int] = None
        self._old: Dict[int, Handler] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.received = signum
        self._restore()

    def _restore(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def __call__(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str:
        return "" if self.received is None else signal.Signals(self.received).name
