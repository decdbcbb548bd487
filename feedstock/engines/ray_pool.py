"""An elastic pool of :class:`~.ray_maker.BatchMaker` actors, one per CPU of the Ray cluster (``ACTOR_CPUS``).

The pool follows the cluster: when ``ray.cluster_resources()`` shows more CPUs
(a node joined, the autoscaler added one) it starts more actors, and Ray places
them on the new CPUs; an actor takes work once its ``check()`` answered (record 0
read on its node). An actor whose node left or died is dropped; the loader gives
its unfinished batches to the others (:mod:`.ray_run`). Actors are created with
``max_restarts=0``: the loader, not Ray, decides where lost work goes, so it is
redone exactly once and the batches' bytes do not change.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Dict, List, Optional

from ..errors import WorkerError
from .ray_maker import BatchMaker

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorHandle

log = logging.getLogger(__name__)
GROW_EVERY_S = 0.5  # how often the cluster's CPU count is read (a GCS round trip)
# Each loader starts one actor per CPU of every live node, pinned to that node, but reserves half
# a CPU per actor: a training and a validation loader (or two ranks on one head) then both get
# actors, and the one being iterated gets the cores (an idle loader's actors wait on nothing).
ACTOR_CPUS = 0.5


class SourceUnreadable(OSError):
    """A Ray node cannot read the source (the message names the node and the path)."""


@dataclass(eq=False)
class Actor:
    handle: ActorHandle
    node_id: str  # where it was placed
    busy: int = 0  # calls submitted and not answered


class ActorPool:
    """Actors holding the source open; ``grow()`` follows the cluster's CPUs, ``drop()`` forgets a lost one."""

    def __init__(self, ray: ModuleType, args: tuple, *, max_actors: Optional[int] = None):
        self.ray, self.args, self.max_actors = ray, args, max_actors
        self._cls = ray.remote(num_cpus=ACTOR_CPUS, max_restarts=0, max_task_retries=0)(BatchMaker)
        self.ready: List[Actor] = []
        self.starting: Dict[ObjectRef, Actor] = {}  # check() ref -> actor not yet answering
        self.lost = 0  # actors dropped because their node left or their process died
        self.started = 0
        self._grown_at = -GROW_EVERY_S

    @property
    def size(self) -> int:
        return len(self.ready) + len(self.starting)

    def node_cpus(self) -> Dict[str, int]:
        """Node id -> whole CPUs, of the live nodes."""
        return {n["NodeID"]: int(n.get("Resources", {}).get("CPU", 0)) for n in self.ray.nodes() if n.get("Alive")}

    def target(self) -> int:
        cpus = sum(self.node_cpus().values())
        return max(1, cpus if self.max_actors is None else min(cpus, self.max_actors))

    def grow(self, force: bool = False) -> None:
        """Start actors up to one per CPU of each live node (read at most every ``GROW_EVERY_S``)."""
        now = time.monotonic()
        if not force and now - self._grown_at < GROW_EVERY_S:
            return
        self._grown_at = now
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        have = Counter(a.node_id for a in [*self.ready, *self.starting.values()])
        for node, cpus in self.node_cpus().items():
            for _ in range(cpus - have[node]):
                if self.max_actors is not None and self.size >= self.max_actors:
                    return
                strategy = NodeAffinitySchedulingStrategy(node, soft=False)
                actor = Actor(self._cls.options(scheduling_strategy=strategy).remote(*self.args), node)
                self.starting[actor.handle.check.remote()] = actor
                self.started += 1

    def on_check(self, ref: ObjectRef) -> None:
        """An actor's ``check()`` answered: it takes work, or its node cannot read the source (raised)."""
        actor = self.starting.pop(ref)
        try:
            node_id, error = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            if getattr(exc, "actor_init_failed", False):  # not a lost node: it would fail anywhere
                raise WorkerError(f"a Ray actor could not start: {_short(exc)} (is feedstock, with the same "
                                  "version, installed on every node?)") from None
            # its node went away while it started
            log.info("a Ray actor was lost while starting: %s", _short(exc))
            self._kill(actor)
            self.lost += 1
            return
        if error:
            raise SourceUnreadable(error)
        actor.node_id = node_id
        self.ready.append(actor)

    def pick(self, most: int) -> Optional[Actor]:
        """The ready actor with the fewest calls in flight, if it has fewer than ``most``."""
        if not self.ready:
            return None
        actor = min(self.ready, key=lambda a: a.busy)
        return actor if actor.busy < most else None

    def drop(self, actor: Actor, why: BaseException) -> None:
        """``actor`` is gone (its node left, its process died): never give it work again."""
        if actor in self.ready:
            self.ready.remove(actor)
            self.lost += 1
            log.warning("Ray actor on node %s lost (%s); its batches are made again elsewhere",
                        actor.node_id[:12], _short(why))
        self._kill(actor)

    def _kill(self, actor: Actor) -> None:
        try:
            self.ray.kill(actor.handle, no_restart=True)
        except Exception:  # noqa: BLE001 (already dead, or Ray is shutting down)
            pass

    def close(self) -> None:
        actors, self.ready = [*self.ready, *self.starting.values()], []
        self.starting, self.args = {}, ()  # the source's object goes too, even if a traceback keeps the pool
        for actor in actors:
            self._kill(actor)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
