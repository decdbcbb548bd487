"""Workers' signal dispositions do not depend on the handlers of the process that started them."""
from __future__ import annotations

import signal

import numpy as np
import pytest

from feedstock.pipeline.loader import Loader


class Dispositions:
    """Each record: whether this worker ignores SIGINT and is ended by SIGTERM."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        return {"int_ignored": np.int64(signal.getsignal(signal.SIGINT) is signal.SIG_IGN),
                "term_default": np.int64(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)}


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_worker_ignores_ctrl_c_and_is_ended_by_sigterm_whatever_its_owner_handles(start_method, no_leaks):
    # `feedstock serve` and `feedstock train` catch SIGTERM to stop cleanly; a forked worker inherited
    # that handler, so the pool's terminate() of a busy worker did nothing and close() waited 3 s
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        with Loader(Dispositions(), batch_size=2, workers=1, start_method=start_method, shuffle=False) as loader:
            batch = next(iter(loader))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert batch["int_ignored"].tolist() == [1, 1]
    assert batch["term_default"].tolist() == [1, 1]
