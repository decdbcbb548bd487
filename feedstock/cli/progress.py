"""The progress bar every long subcommand shows: tqdm on stderr with count, rate and ETA."""
from __future__ import annotations

import sys
from typing import Optional

from tqdm import tqdm


class Bar(tqdm):
    """tqdm without its monitor thread: a live Python thread would make the worker pool
    choose ``spawn`` over ``fork`` (slower start-up); the bar only needs updates from us."""

    monitor_interval = 0


def progress_bar(total: Optional[int], *, desc: str, unit: str = "rec", initial: int = 0,
                 disable: bool = False) -> tqdm:
    """A bar on stderr (stdout stays clean for summaries); ``initial`` counts work done by an earlier run."""
    return Bar(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=disable,
               dynamic_ncols=True, mininterval=0.5, smoothing=0.1)


def add_quiet_flag(parser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
