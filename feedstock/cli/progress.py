"""Progress that fits where it runs: a tqdm bar in a terminal, else a line every few seconds.

In a terminal the bar redraws in place (count, rate, ETA). Anywhere else (a log file,
CI, a pipe) redrawing makes no sense: the same meter is printed as a plain line every
``LINE_EVERY_S`` seconds, with the count, the percentage, the rate and the ETA, and a
last line when the work ends. Log records go through :func:`logging_redirect` (tqdm's
logging redirect, which the ``feedstock`` command sets up), so an INFO line never
lands in the middle of a bar.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator, Optional, TextIO

from tqdm import tqdm

LINE_EVERY_S = 10.0  # outside a terminal: one line this often
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {rate_fmt}, {elapsed} elapsed, ETA {remaining}"
LINE_FORMAT_OPEN = "{desc}: {n_fmt} {unit}, {rate_fmt}, {elapsed} elapsed"  # no total: no percentage or ETA


def is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # a closed stream
        return False


class _Lines:
    """A file for tqdm outside a terminal: each redraw becomes one line; blank redraws and repeats are dropped."""

    def __init__(self, out: TextIO):
        self.out, self.last = out, ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line and line != self.last:
            self.out.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return False


class Bar(tqdm):
    """tqdm without its monitor thread (a live Python thread would make the worker pool choose ``spawn``
    over ``fork``: slower start-up; the bar only needs updates from us), printing lines every
    ``line_every`` seconds instead of a bar when its stream is not a terminal."""

    monitor_interval = 0

    def __init__(self, *args: Any, line_every: float = LINE_EVERY_S, **kwargs: Any):
        out = kwargs.get("file") or sys.stderr
        self.as_lines = not is_terminal(out) and not kwargs.get("disable", False)
        if self.as_lines:
            kwargs["file"] = _Lines(out)
            kwargs["mininterval"] = line_every
            kwargs["dynamic_ncols"] = False
            total = kwargs.get("total")
            if total is None and args and hasattr(args[0], "__len__"):
                total = len(args[0])
            kwargs.setdefault("bar_format", LINE_FORMAT if total is not None else LINE_FORMAT_OPEN)
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        if self.as_lines and not self.disable:
            self.refresh()  # the last line: where the work ended, however little time has passed
            self.leave = False  # tqdm's own last redraw would repeat it
        super().close()


def progress_bar(total: Optional[int], *, desc: str, unit: str = "rec", initial: int = 0,
                 disable: bool = False, line_every: float = LINE_EVERY_S) -> tqdm:
    """A bar on stderr (stdout stays clean for summaries); ``initial`` counts work done by an earlier run."""
    return Bar(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=disable,
               dynamic_ncols=True, mininterval=0.5, smoothing=0.1, line_every=line_every)


@contextlib.contextmanager
def logging_redirect() -> Iterator[None]:
    """Log records written through tqdm (above a bar in a terminal), never into the middle of one."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(tqdm_class=Bar):
        yield


def add_quiet_flag(parser: Any) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
