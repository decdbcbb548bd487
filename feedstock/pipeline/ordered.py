"""``ordered_map``: ``map`` over a :class:`~.pool.ProcessPool`, results in input order, a bounded window in flight."""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, TypeVar, cast

from .pool import ProcessPool

T = TypeVar("T")
R = TypeVar("R")


def _map_factory(fn: Callable[[T], R], wid: int) -> Callable[[T], R]:
    return fn


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int,
    window: Optional[int] = None,
    **pool_options: Any,
) -> Iterator[R]:
    """``map(fn, items)`` in worker processes, results in input order, at most ``window`` in flight.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of
    one); ``workers=0`` runs in this process. ``pool_options`` go to ProcessPool.
    """
    if workers == 0:
        yield from map(fn, items)
        return
    window = window or 2 * workers
    if window < 1:
        raise ValueError(f"{window=} must be positive")
    with ProcessPool(functools.partial(_map_factory, fn), workers=workers, **pool_options) as pool:
        order: Dict[int, int] = {}
        done: Dict[int, R] = {}
        items_iter, n_in, n_out = iter(items), 0, 0
        while True:
            while n_in - n_out < window:
                item = next(items_iter, _END)
                if item is _END:
                    break
                order[pool.submit(item)] = n_in
                n_in += 1
            if n_out == n_in:
                return
            while n_out not in done:
                for tid, result in pool.results():
                    done[order.pop(tid)] = cast(R, result)  # fn's result, back from the worker
            yield done.pop(n_out)
            n_out += 1


_END = object()
