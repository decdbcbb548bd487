"""Progress that fits where it runs: lines with rate and ETA outside a terminal, a bar in one, logs above it."""
from __future__ import annotations

import io
import logging
import re

from feedstock.cli.progress import Bar, logging_redirect, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_outside_a_terminal_each_print_is_a_line_with_rate_and_eta():
    out = io.StringIO()
    bar = Bar(total=40, desc="build", unit="rec", file=out, line_every=0.0)
    for _ in range(40):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) >= 3
    assert re.fullmatch(r"build: 40/40 rec \(100%\), [\d.]+ ?k?rec/s, 00:0\d elapsed, ETA 00:00", lines[-1]), lines[-1]
    assert lines[-1] != lines[-2]  # the last line is not printed twice
    assert all("ETA" in line and "/40 rec" in line for line in lines)


def test_outside_a_terminal_lines_come_every_n_seconds_not_every_update():
    out = io.StringIO()
    bar = Bar(total=10_000, desc="d", file=out, line_every=3600)  # nothing is due within the hour
    for _ in range(10_000):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("d: 0/10000") and lines[1].startswith("d: 10000/10000")


def test_without_a_total_the_line_has_the_count_and_rate():
    out = io.StringIO()
    with Bar(total=None, desc="pairs", unit="pair", file=out, line_every=0.0) as bar:
        bar.update(7)
    assert re.match(r"pairs: 7 pair, [\d.?]+ ?k?pair/s, 00:0\d elapsed$", out.getvalue().splitlines()[-1])


def test_in_a_terminal_it_is_a_bar_redrawn_in_place():
    out = Terminal()
    bar = Bar(total=10, desc="t", file=out, mininterval=0)
    bar.update(5)
    bar.close()
    assert "\r" in out.getvalue() and "|" in out.getvalue()


def test_log_lines_go_above_the_bar_not_through_it(capsys):
    logger = logging.getLogger("feedstock.test_progress")
    root = logging.getLogger()
    handler = logging.StreamHandler()  # stderr, as logging.basicConfig in the feedstock command
    root.addHandler(handler)
    try:
        with logging_redirect():
            bar = progress_bar(100, desc="job", disable=False)
            bar.update(10)
            logger.warning("a message from a worker")
            bar.update(10)
            bar.close()
    finally:
        root.removeHandler(handler)
    err = capsys.readouterr().err
    message = [line for line in err.splitlines() if "a message from a worker" in line]
    assert message == ["a message from a worker"]  # on its own line, not glued into a meter
