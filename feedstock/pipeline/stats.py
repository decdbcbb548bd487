"""Loader observability: throughput and per-stage times of a pass, and the bad-record ledger."""
from __future__ import annotations

import logging
import time
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ..errors import TooManyBadRecords

log = logging.getLogger("feedstock.loader")

_LOG_FIRST = 5  # bad records logged one by one, then ...
_LOG_EVERY_S = 30.0  # ... at most one summary line per this many seconds
_KEEP_RECORDS = 100_000  # entries kept for report(); the counts stay exact beyond it


class RunStats:
    """Counters for one pass over the data (one ``iter(loader)``).

    Worker seconds count the chunks collected during the pass; near an epoch's end
    those include the next epoch's first batches, filled ahead.
    """

    def __init__(self, epoch: int, slots: int, workers: int):
        self.epoch, self.slots, self.workers = epoch, slots, workers
        self.started = time.perf_counter()
        self.batches = self.samples = self.rows_filled = 0
        self.read_s = self.decode_s = self.transform_s = self.wait_s = 0.0
        self.first_batch_s: Optional[float] = None
        self._ready_sum = self._in_flight_sum = 0

    def on_chunk(self, rows: int, read_s: float, decode_s: float, transform_s: float) -> None:
        self.rows_filled += rows
        self.read_s += read_s
        self.decode_s += decode_s
        self.transform_s += transform_s

    def on_batch(self, rows: int, wait_s: float, ready: int, in_flight: int) -> None:
        """``ready``: finished batches waiting when the consumer asked; ``in_flight``: being filled."""
        if self.first_batch_s is None:
            self.first_batch_s = time.perf_counter() - self.started
        self.batches += 1
        self.samples += rows
        self.wait_s += wait_s
        self._ready_sum += ready
        self._in_flight_sum += in_flight

    def summary(self) -> Dict[str, float]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        n = max(self.batches, 1)
        return {
            "epoch": self.epoch,
            "batches": self.batches,
            "samples": self.samples,
            "elapsed_s": elapsed,
            "samples_per_s": self.samples / elapsed,
            "first_batch_s": self.first_batch_s if self.first_batch_s is not None else float("nan"),
            "read_s": self.read_s,  # summed over workers; includes decoding done by the source
            "decode_s": self.decode_s,  # the part of read_s spent decoding (sources that report it)
            "transform_s": self.transform_s,  # summed over workers; includes the write into the slot
            "wait_s": self.wait_s,  # how long the consumer waited for data
            "wait_fraction": self.wait_s / elapsed,
            "slots": self.slots,
            "workers": self.workers,
            "slots_ready_mean": self._ready_sum / n,  # occupancy: finished batches queued
            "slots_filling_mean": self._in_flight_sum / n,  # occupancy: batches being filled
        }


class BadRecords:
    """Skipped records: deduplicated per epoch, logged with a rate limit, capped by a fraction."""

    def __init__(self, max_bad_fraction: float, shard_size: int):
        self.max_bad_fraction, self.shard_size = max_bad_fraction, shard_size
        self.total = 0
        self.records: List[Dict[str, object]] = []
        self._seen: Set[Tuple[int, int]] = set()
        self._per_epoch: Dict[int, int] = {}
        self._last_log = float("-inf")
        self._unlogged = 0

    def add(self, epoch: int, bad: Iterable[Tuple[int, str, str]]) -> None:
        for index, key, message in bad:
            if (epoch, index) in self._seen:
                continue
            self._seen.add((epoch, index))
            self.total += 1
            count = self._per_epoch[epoch] = self._per_epoch.get(epoch, 0) + 1
            if len(self.records) < _KEEP_RECORDS:
                self.records.append({"epoch": epoch, "index": index, "key": key, "error": message})
            self._log(key, message)
            budget = self.max_bad_fraction * self.shard_size
            if count > budget:
                raise TooManyBadRecords(
                    f"{count} bad records in epoch {epoch} exceed max_bad_fraction={self.max_bad_fraction} "
                    f"of the {self.shard_size} records per epoch; latest {key}: {message}"
                )

    def _log(self, key: str, message: str) -> None:
        now = time.monotonic()
        if self.total <= _LOG_FIRST:
            log.warning("skipped bad record %s: %s", key, message)
            self._last_log = now
        elif now - self._last_log >= _LOG_EVERY_S:
            log.warning("skipped %d bad records so far (%d since the last message); latest %s: %s",
                        self.total, self._unlogged + 1, key, message)
            self._last_log, self._unlogged = now, 0
        else:
            self._unlogged += 1
