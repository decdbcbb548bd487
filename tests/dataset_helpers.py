"""Users' own datasets for the door tests (module level: picklable for spawn workers)."""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import numpy as np

Pair = collections.namedtuple("Pair", ["image", "label"])


@dataclass
class Item:
    image: Any
    label: Any


def image(i: int, shape=(2, 3)) -> np.ndarray:
    """Record i's array: i * 100 + arange, float32."""
    return (np.arange(int(np.prod(shape)), dtype=np.float32) + 100 * i).reshape(shape)


MAKERS: Dict[str, Callable[[int], Any]] = {
    "dict": lambda i: {"image": image(i), "label": i},
    "tuple": lambda i: (image(i), i),
    "list": lambda i: [image(i), np.int32(i)],
    "namedtuple": lambda i: Pair(image(i), float(i)),
    "dataclass": lambda i: Item(image(i), np.int16(i)),
    "array": lambda i: image(i),
    "number": lambda i: float(i) / 2,
    "intkeys": lambda i: {3: image(i), 7: i % 2 == 0},
}


class Records:
    """A map-style dataset of ``n`` records made by ``MAKERS[kind]``; ``bad`` maps an index to a replacement."""

    def __init__(self, kind: str, n: int = 10, bad: Optional[Dict[int, Any]] = None):
        self.kind, self.n, self.bad = kind, n, dict(bad or {})

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        if i in self.bad:
            return self.bad[i]
        return MAKERS[self.kind](i)


class Keyed(Records):
    """Records with their own names."""

    def key(self, i: int) -> str:
        return f"sample-{i:03d}.png"


class OnlyIter:
    """An iterable-only dataset."""

    def __iter__(self):
        return iter(range(3))


class TupleOnly:
    """A sequence without ``__len__``."""

    def __getitem__(self, i: int):
        return np.zeros(2)


class Failing:
    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int):
        raise OSError("disk gone")


WORKER = [-1]  # set by note_worker in each worker process


def note_worker(wid: int) -> None:
    WORKER[0] = wid


class WhichWorker:
    """Record i: (i, the worker id set by note_worker, a draw from numpy's global generator)."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int):
        return i, WORKER[0], np.random.random()


class Busy:
    """A dataset whose __getitem__ is the whole cost (~0.3 ms of arithmetic per record)."""

    def __len__(self) -> int:
        return 512

    def __getitem__(self, i: int):
        x = np.full((64, 64), float(i), np.float32)
        for _ in range(8):
            x = np.sqrt(x * x + 1.0)
        return x, i % 10


def make_busy() -> Busy:
    return Busy()
