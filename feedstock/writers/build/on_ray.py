"""build-lmdb on Ray Data: every output partition is a shard build run as a Ray Data task, then merged into OUT.

The driver computes the plan once (the local engine's pure function) and picks
``P`` partitions; task ``i`` builds shard ``i/P`` into ``OUT.parts/part-<i>`` with
``build_lmdb``; ``merge_lmdb`` joins the shards into what one machine would have
built, byte for byte. Errors travel as data and are re-raised with the local
engine's type and message. ``OUT.parts`` must be on a filesystem every Ray node
mounts at the same path; it is kept after a failure so ``resume=True`` reuses its
finished partitions. docs/architecture.md ("build-lmdb on Ray") has the design,
the work folder's rules and how to run it on a cluster.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import time
import traceback
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, TypedDict

import numpy as np

from ...errors import RecordError, WorkerError
from . import output as bo
from .builder import BuildOptions, BuildReport, build_lmdb, check_kind_options
from .merge import merge_lmdb
from .plan import Split, detect_kind, make_splits, shard_range
from .safety import check_not_source, output_paths, parts_path, safe_listing

log = logging.getLogger(__name__)
Progress = Callable[[int], None]
STATE = "ray.json"  # in OUT.parts: partition count and plan, checked by resume
STATE_FORMAT = "feedstock.build-ray/1"
MIN_RECORDS_PER_PARTITION = 256  # each partition re-lists SRC and opens its LMDB: keep them worth it
PARTITIONS_PER_CPU = 4  # enough tasks per CPU to even out slow images and slow nodes
INSTALL_HINT = "the ray engine needs Ray Data: pip install 'feedstock[ray]'"


def part_dir(parts: str, index: int) -> str:
    return os.path.join(parts, f"part-{index:05d}")


def default_partitions(records: int, cpus: int) -> int:
    """``PARTITIONS_PER_CPU`` per CPU, but no partition under ``MIN_RECORDS_PER_PARTITION`` records."""
    by_size = -(-records // MIN_RECORDS_PER_PARTITION)
    return max(1, min(by_size, PARTITIONS_PER_CPU * max(1, cpus)))


def import_ray() -> ModuleType:
    """The ``ray`` module with Ray Data loaded, or an ImportError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data needs pyarrow and pandas: the [data] extra)
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    return ray


def build_lmdb_ray(src: str, out: str, options: BuildOptions, *, address: Optional[str] = None,
                   partitions: Optional[int] = None, force: bool = False, resume: bool = False,
                   progress: Optional[Progress] = None, on_total: Optional[Callable[[int, int], None]] = None,
                   init_kwargs: Optional[Dict[str, Any]] = None) -> BuildReport:
    """Build ``src`` into ``out`` with Ray Data; the bytes equal ``build_lmdb(src, out, options)``.

    ``partitions``: shard builds to run (default :func:`default_partitions`);
    ``init_kwargs``: extra ``ray.init`` arguments when this call connects or starts Ray.
    """
    _check_arguments(options, partitions, force, resume)
    ray = import_ray()
    started = time.monotonic()
    src, out = os.path.abspath(src), os.path.abspath(out)
    parts = parts_path(out)
    check_not_source(src, output_paths(out))
    if resume and not os.path.isdir(parts) and bo.is_build_output(out):
        return _complete_report(out)
    plan, splits = _plan(src, out, options)
    old_state = _prepare_parts(out, parts, plan, force=force, resume=resume)
    with _ray_session(ray, address, options.workers, init_kwargs or {}) as cpus:
        count = _partition_count(old_state, partitions, plan["records"], cpus)
        os.makedirs(parts, exist_ok=True)
        _write_state(parts, {"format": STATE_FORMAT, "partitions": count, "plan": plan})
        sizes = [sum(b - a for a, b in (shard_range(len(s.order), (i, count)) for s in splits)) for i in range(count)]
        if on_total:
            on_total(sum(sizes), 0)
        log.info("building %d records in %d partitions on %d Ray CPUs (work folder %s)", sum(sizes), count, cpus,
                 parts)
        processed = _run_partitions(ray, src, parts, options, sizes, progress, output_paths(out))
    _merge_parts(parts, count, out, options.txn_size)
    report = _report(out, processed, time.monotonic() - started, cpus)
    report.resumed = old_state is not None
    return report


def _plan(src: str, out: str, options: BuildOptions) -> Tuple[dict, List[Split]]:
    """The plan every partition will recompute (as ``build_lmdb`` records it) and its splits;
    refuses an output that is, holds or hides the source before ``force`` removes anything."""
    kind = detect_kind(src) if options.kind == "auto" else options.kind
    check_kind_options(kind, options)  # fail here, before Ray starts, rather than in every task
    listing = safe_listing(src, kind, options, output_paths(out))
    splits = make_splits(listing, shuffle=options.shuffle, seed=options.seed, val_fraction=options.val_fraction)
    plan = {"options": options.plan(), "kind": kind, "records": len(listing),
            "splits": [{"name": s.name, "digest": s.digest, "total": len(s.order)} for s in splits]}
    return plan, splits


def _check_arguments(options: BuildOptions, partitions: Optional[int], force: bool, resume: bool) -> None:
    if force and resume:
        raise ValueError("force=True (--force) and resume=True (--resume) exclude each other")
    if partitions is not None and partitions < 1:
        raise ValueError(f"partitions={partitions!r} must be positive")
    if options.shard != (0, 1):
        raise ValueError(f"shard={options.shard!r}: the ray engine partitions the build itself; "
                         "shard with the local engine, or give the whole job to Ray")


def _prepare_parts(out: str, parts: str, plan: dict, *, force: bool, resume: bool) -> Optional[dict]:
    """Check (or with ``force`` clear) OUT.parts before Ray starts; the state of a build to resume.
    ``force`` keeps OUT until the new build is published over it (a failed rebuild leaves it as it was)."""
    bo.release_tree(out)
    if force:
        bo.remove_paths(bo.partial_path(out), parts)
    elif os.path.exists(out):
        raise FileExistsError(f"output {out!r} already exists; pass --force to replace it")
    if not os.path.isdir(parts):
        return None
    if not resume:
        raise FileExistsError(f"an interrupted ray build is at {parts!r}: pass --resume to reuse its finished "
                              "partitions or --force to start over")
    state = _read_state(parts)
    if state is None:
        return None  # stopped before Ray started: nothing to reuse
    problem = bo.plan_mismatch(state.get("plan", {}), plan)
    if problem:
        raise ValueError(f"cannot resume {parts!r} with different settings: {problem}")
    return state


def _read_state(parts: str) -> Optional[dict]:
    path = os.path.join(parts, STATE)
    if not os.path.exists(path):
        if os.listdir(parts):
            raise ValueError(f"cannot resume: {parts!r} has no {STATE} (not a feedstock ray build)")
        return None
    with open(path, encoding="utf-8") as f:
        state = json.load(f)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path!r} is not a {STATE_FORMAT} file (format={state.get('format')!r})")
    return state


def _write_state(parts: str, state: dict) -> None:
    tmp = os.path.join(parts, STATE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(parts, STATE))


def _partition_count(state: Optional[dict], partitions: Optional[int], records: int, cpus: int) -> int:
    """A resumed build keeps its count (its parts are shards of it); else the argument or the default."""
    if state is not None:
        if partitions is not None and partitions != state["partitions"]:
            raise ValueError(f"partitions={partitions!r}: the build being resumed has {state['partitions']}")
        return int(state["partitions"])
    if partitions is None:
        return default_partitions(records, cpus)
    return max(1, min(partitions, records))  # an empty partition would only cost a task


@contextlib.contextmanager
def _ray_session(ray: ModuleType, address: Optional[str], workers: int, init_kwargs: Dict[str, Any]) -> Iterator[int]:
    """Connect to ``address``, reuse a running connection, or start a local instance; yields the cluster CPUs."""
    started_here = not ray.is_initialized()
    if not started_here:
        if address is not None:
            log.warning("Ray is already initialised in this process: using that connection, not %s", address)
    elif address is not None:
        ray.init(address=address, **init_kwargs)
    else:
        # "local": a new instance, never the latest cluster another process started on this machine
        ray.init(address="local", num_cpus=workers or None, include_dashboard=False, **init_kwargs)
    try:
        yield int(ray.cluster_resources().get("CPU", 1))
    finally:
        if started_here:
            ray.shutdown()


def _run_partitions(ray: ModuleType, src: str, parts: str, options: BuildOptions, sizes: List[int],
                    progress: Optional[Progress], exclude: List[str]) -> int:
    """Run every partition as a Ray Data task; re-raise the first task error; returns records processed."""
    context = ray.data.DataContext.get_current()
    bars, context.enable_progress_bars = context.enable_progress_bars, False  # our own progress instead
    try:
        count = len(sizes)
        dataset = ray.data.range(count, override_num_blocks=count).map(
            build_partition, fn_kwargs={"src": src, "parts": parts, "options": options, "count": count,
                                        "exclude": exclude}, num_cpus=1)
        processed = 0
        for row in dataset.iter_rows():  # in completion order
            if row["error_kind"]:
                raise _task_error(row, count, parts)
            processed += int(row["processed"])
            if progress:
                progress(sizes[int(row["id"])])
        return processed
    finally:
        context.enable_progress_bars = bars


class PartitionOutcome(TypedDict):
    """What a partition task sends back (Ray Data rows are dicts): its count, or its error as data."""

    id: int
    processed: int
    error_kind: str  # "": none; "record", "value", "os" or "other"
    key: str
    message: str
    traceback: str


def build_partition(row: Mapping[str, int], *, src: str, parts: str, options: BuildOptions, count: int,
                    exclude: Sequence[str] = ()) -> PartitionOutcome:
    """Ray Data task: shard ``row['id']`` of ``count`` into ``OUT.parts``; exceptions come back as data.
    ``exclude``: the final OUT's paths, never scanned (the task's own output is a part folder)."""
    index = int(row["id"])
    outcome: PartitionOutcome = {"id": index, "processed": 0, "error_kind": "", "key": "", "message": "",
                               "traceback": ""}
    shard_options = dataclasses.replace(options, shard=(index, count), workers=0)
    try:
        outcome["processed"] = build_lmdb(src, part_dir(parts, index), shard_options, resume=True,
                                          exclude=exclude).processed
    except Exception as e:  # noqa: BLE001 (every failure goes back to the driver, which re-raises it)
        kind = "record" if isinstance(e, RecordError) else "value" if isinstance(e, ValueError) else \
            "os" if isinstance(e, OSError) else "other"
        outcome.update({"error_kind": kind, "key": getattr(e, "key", "") or "", "message": str(e),
                        "traceback": f"{type(e).__name__} on {os.uname().nodename}\n{traceback.format_exc()}"})
    return outcome


def _task_error(row: PartitionOutcome, count: int, parts: str) -> Exception:
    """The local engine's exception for a failed task, with the task's traceback as its cause."""
    where = f"partition {int(row['id'])} of {count}"
    log.error("%s failed; finished partitions are kept in %s for resume=True (--resume)", where, parts)
    cause = WorkerError(f"{where} failed", worker_traceback=row["traceback"])
    kind, message, key = row["error_kind"], row["message"], row["key"]
    if kind == "record":
        error: Exception = RecordError(key, message[len(key) + 2:] if message.startswith(f"{key}: ") else message)
    elif kind == "value":
        error = ValueError(f"{message} ({where})")
    elif kind == "os":
        error = OSError(f"{message} ({where})")
    else:
        return cause
    error.__cause__ = cause
    return error


def _merge_parts(parts: str, count: int, out: str, txn_size: int) -> None:
    """Join the parts into OUT (one part is the build itself) and remove the work folder."""
    if count == 1:
        final = part_dir(parts, 0)
    else:
        final = os.path.join(parts, "merged")
        log.info("merging %d partitions into %s", count, out)
        merge_lmdb(final, [part_dir(parts, i) for i in range(count)], force=True, txn_size=txn_size)
        manifest = bo.read_manifest(final)
        del manifest["merged_from"]  # the parts are deleted below; the manifest is the local build's
        bo.write_manifest(final, manifest)
    bo.publish(final, out)
    shutil.rmtree(parts)


def _report(out: str, processed: int, elapsed_s: float, cpus: int) -> BuildReport:
    manifest = bo.read_manifest(out)
    mean_path = os.path.join(out, "mean.npy")
    mean = np.load(mean_path) if os.path.isfile(mean_path) else None
    return BuildReport(out, manifest["result"]["splits"], bo.SkippedLog(out).entries, manifest.get("class_names"),
                       mean, processed, elapsed_s, workers=cpus)


def _complete_report(out: str) -> BuildReport:
    """``resume=True`` of a build that already finished: nothing to do, report what is there."""
    report = _report(out, 0, 0.0, 0)
    report.already_complete = True
    return report
