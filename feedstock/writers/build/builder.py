"""The build-lmdb engine: plan -> worker processes (decode, resize, encode) -> one LMDB writer -> publish.

Records are written in line order by a single writer in this process, in
transactions of ``txn_size``; workers only turn chunks of the plan into Datum
bytes. Everything goes to ``OUT.partial`` and is renamed to ``OUT`` at the end
(see :mod:`.output`); ``resume=True`` continues a partial build after its
last committed key and gives the same bytes as an uninterrupted build.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from ...errors import RecordError
from ...loaders.caffe_lmdb import CaffeLmdb, read_keys, release_env
from ...loaders.csv_classes import check_classes
from ...pipeline.ordered import ordered_map
from . import output as bo
from .encode import RESIZE_MODES, ChunkResult, ImageJob, encode_images, encode_table
from .plan import IMAGE_KINDS, KINDS, Listing, Split, chunks, detect_kind, key_line_id, make_splits, record_key
from .safety import check_not_source, output_paths, safe_listing
from ..lmdb_writer import LmdbWriter, is_lmdb
from ..mean import ExactMean, write_mean_outputs

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


@dataclass(frozen=True)
class BuildOptions:
    """Everything that decides a build; validated here so the CLI and the API fail the same way."""

    kind: str = "auto"  # auto | folder | list | csv | hdf5
    root: str = ""  # list files: prepended to every path (Caffe's ROOTFOLDER)
    label_column: Optional[str] = None  # CSV column / HDF5 dataset holding the label
    color: bool = True  # False: one grey channel (convert_imageset --gray)
    resize_height: int = 0
    resize_width: int = 0
    resize_mode: str = "squash"
    encoding: Optional[str] = None  # None: raw Datums; "": guess per file; "jpg"/"png"
    shuffle: bool = False
    seed: int = 0
    check_size: bool = False
    val_fraction: float = 0.0
    mean: bool = False
    strict: bool = False
    shard: Tuple[int, int] = (0, 1)
    workers: int = 0  # 0: decode in this process
    txn_size: int = 1000
    chunk_size: int = 16
    throttle_s: float = 0.0  # test hook: seconds slept per record
    start_method: str = "auto"  # worker start: auto (the pool's choice), fork or spawn
    no_labels: bool = False  # CSV/HDF5 without a label column: every label 0 (else a missing column is an error)
    classes: Optional[Tuple[str, ...]] = None  # CSV/folder/list: the dataset's class list (labels.txt of the training build)
    reencode: bool = False  # --encoded: re-encode files a reader would get in another channel count or depth

    def __post_init__(self) -> None:
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(check_classes(self.classes, "classes")))
        if self.no_labels and (self.label_column is not None or self.classes is not None):
            raise ValueError("no_labels=True (--no-labels) excludes label_column and classes")
        if self.reencode and self.encoding is None:
            raise ValueError("reencode=True (--reencode) applies to encoded builds (--encoded or --encode-type)")
        if self.kind != "auto" and self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} must be 'auto' or one of {KINDS}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode={self.resize_mode!r} must be one of {RESIZE_MODES}")
        for name in ("resize_height", "resize_width", "workers", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 0")
        for name in ("txn_size", "chunk_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be positive")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction!r} must be in [0, 1)")
        i, n = self.shard
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"shard={self.shard!r} must be (i, N) with 0 <= i < N")
        if self.start_method not in ("auto", "fork", "spawn", "forkserver"):
            raise ValueError(f"start_method={self.start_method!r} must be auto, fork, spawn or forkserver")
        if self.encoding not in (None, "") and not self.encoding.isalnum():
            raise ValueError(f"encoding={self.encoding!r} must be a file extension such as 'jpg' or 'png'")

    def plan(self) -> dict:
        """The options that decide the content (not workers, transaction or chunk sizes)."""
        skip = {"workers", "txn_size", "chunk_size", "throttle_s", "strict", "shard", "start_method"}
        plan = {k: v for k, v in asdict(self).items() if k not in skip}
        plan["classes"] = list(self.classes) if self.classes is not None else None
        for name in ("no_labels", "classes", "reencode"):  # absent when unset: older partial builds still resume
            if not plan[name]:
                del plan[name]
        return plan

    def image_job(self) -> ImageJob:
        return ImageJob(color=self.color, height=self.resize_height, width=self.resize_width,
                        resize_mode=self.resize_mode, encoding=self.encoding, want_sum=self.mean,
                        seed=self.seed, throttle_s=self.throttle_s, reencode=self.reencode)


@dataclass
class BuildReport:
    """What a build wrote; ``splits`` hold the per-database facts of the manifest."""

    out: str
    splits: List[dict]
    skipped: List[bo.Skipped]
    class_names: Optional[List[str]] = None
    mean: Optional[np.ndarray] = None
    processed: int = 0  # records handled by this run (a resumed run counts only its own)
    elapsed_s: float = 0.0
    resumed: bool = False
    already_complete: bool = False
    workers: int = 0
    forced: Optional[dict] = None  # kept files readers must decode with force_color/force_gray (see _finish)


def build_lmdb(src: str, out: str, options: BuildOptions, *, force: bool = False, resume: bool = False,
               progress: Optional[Progress] = None, on_total: Optional[Callable[[int, int], None]] = None,
               exclude: Sequence[str] = ()) -> BuildReport:
    """Build the LMDB(s) of ``src`` at ``out``; ``on_total(total, already_done)`` precedes progress calls.

    ``out``, ``out.partial``, ``out.parts`` and the paths in ``exclude`` (a ray partition
    passes its final OUT's) are never scanned; an output that is or holds the source,
    or would hide source records, is refused before anything is removed.
    """
    if force and resume:
        raise ValueError("force=True (--force) and resume=True (--resume) exclude each other")
    started = time.monotonic()
    src, out = os.path.abspath(src), os.path.abspath(out)
    outputs = output_paths(out) + [os.path.abspath(p) for p in exclude]
    check_not_source(src, outputs)
    if resume and not os.path.exists(bo.partial_path(out)) and bo.is_build_output(out):
        return _report_from_manifest(out)
    kind = detect_kind(src) if options.kind == "auto" else options.kind
    check_kind_options(kind, options)
    listing = safe_listing(src, kind, options, outputs)
    splits = make_splits(listing, shuffle=options.shuffle, seed=options.seed,
                         val_fraction=options.val_fraction, shard=options.shard)
    plan = {"options": options.plan(), "kind": kind, "records": len(listing),
            "splits": [{"name": s.name, "digest": s.digest, "total": len(s.order)} for s in splits]}
    partial, resuming = bo.prepare_output(out, force=force, resume=resume)
    manifest = {"format": bo.FORMAT, "complete": False, "source": src, "plan": plan,
                "shard": list(options.shard), "class_names": listing.class_names}
    if resuming:
        old = bo.read_manifest(partial)
        problem = bo.plan_mismatch({**old.get("plan", {}), "shard": old.get("shard")}, {**plan, "shard": list(options.shard)})
        if problem:
            raise ValueError(f"cannot resume {partial!r} with different settings: {problem}")
    bo.write_manifest(partial, manifest)
    run = _Run(listing, options, partial, bo.SkippedLog(partial), progress)
    run.log_left_out()
    done = sum(run.resume_point(s) - s.lo for s in splits)
    if on_total:
        on_total(sum(s.hi - s.lo for s in splits), done)
    run.write_all(splits)
    report = _finish(run, splits, manifest, out)
    report.resumed, report.elapsed_s, report.workers = resuming, time.monotonic() - started, options.workers
    return report


def check_kind_options(kind: str, options: BuildOptions) -> None:
    if kind not in IMAGE_KINDS:
        image_only = {"resize_height": 0, "resize_width": 0, "encoding": None, "color": True}
        for name, default in image_only.items():
            if getattr(options, name) != default:
                raise ValueError(f"{name}={getattr(options, name)!r} applies to image sources only, not {kind}")
    else:
        for name in ("no_labels", "label_column"):
            if getattr(options, name):
                raise ValueError(f"{name}={getattr(options, name)!r} applies to CSV and HDF5 sources, not {kind}")
    if options.classes is not None and kind == "hdf5":
        raise ValueError("classes applies to CSV, image folder and list file sources, not hdf5")


class _Run:
    """State of one build run: the listing, the skipped log, the mean and the first record's shape."""

    def __init__(self, listing: Listing, options: BuildOptions, partial: str, skipped: bo.SkippedLog,
                 progress: Optional[Progress]):
        self.listing, self.options, self.partial = listing, options, partial
        self.skipped, self.progress = skipped, progress
        self.mean: Optional[ExactMean] = ExactMean() if options.mean else None
        self.processed = 0
        self.forced: List[str] = []  # "name (what it is)" of files kept that need force_color/force_gray
        self.forced_count = 0
        self._starts: dict = {}

    def log_left_out(self) -> None:
        """Bad table rows the listing left out go to skipped.txt (line id -1: they have no key), once."""
        logged = {(e.name, e.reason) for e in self.skipped.entries}
        for where, reason in self.listing.left_out:
            if (where, reason) not in logged:
                self.skipped.add(bo.Skipped("", -1, where, reason))

    def resume_point(self, split: Split) -> int:
        """First line id still to write: after the last committed key of a partial database."""
        if split.name not in self._starts:
            db = bo.db_dir(self.partial, split.name)
            start = split.lo
            if is_lmdb(db):
                keys = read_keys(db)
                if len(keys):
                    start = max(start, key_line_id(keys.raw(len(keys) - 1)) + 1)
                release_env(db)
            self._starts[split.name] = start
        return self._starts[split.name]

    def write_all(self, splits: List[Split]) -> None:
        """Encode every remaining chunk (in workers) and write each record to its split's database."""
        first_shapes = [self._prepare_split(s) for s in splits]
        tasks = ((k, self._task(s, lo, hi)) for k, s in enumerate(splits)
                 for lo, hi in chunks(self.resume_point(s), s.hi, self.options.chunk_size))
        with contextlib.ExitStack() as stack:
            writers = [stack.enter_context(LmdbWriter(bo.db_dir(self.partial, s.name), resume=is_lmdb(
                bo.db_dir(self.partial, s.name)), txn_size=self.options.txn_size)) for s in splits]
            results = stack.enter_context(contextlib.closing(self._map(tasks)))  # type: ignore[type-var]
            for k, result in results:
                first_shapes[k] = self._write_chunk(splits[k], result, writers[k], first_shapes[k],
                                                    with_mean=self.options.mean and k == 0)

    def _prepare_split(self, split: Split) -> Optional[tuple]:
        """Forget skipped entries that will be redone; re-read what a resumed database holds."""
        start = self.resume_point(split)
        self.skipped.keep_before(split.name, start)
        if start == split.lo:
            return None
        with_mean = self.options.mean and split.name in ("", "train")  # the mean is the first split's
        return self._resume_state(bo.db_dir(self.partial, split.name), with_mean)

    def _map(self, tasks: Iterator[Tuple[int, list]]) -> Iterator[Tuple[int, ChunkResult]]:
        """Results in task order; image chunks run in the pipeline's process pool when workers > 0."""
        fn = self._chunk_function()
        workers = self.options.workers if self.listing.paths is not None else 0
        if workers == 0:
            return ((k, fn(task)) for k, task in tasks)
        return ordered_map(functools.partial(tagged_call, fn), tasks, workers=workers,
                           start_method=self.options.start_method, name="feedstock-build")

    def _task(self, split: Split, lo: int, hi: int) -> list:
        ids = split.order[lo:hi].tolist()
        paths, labels = self.listing.paths, self.listing.labels
        if paths is None:  # the label is the listing's: the column the build was told, not a field name
            return [(lo + j, i, int(labels[i])) for j, i in enumerate(ids)]
        return [(lo + j, i, paths[i], int(labels[i])) for j, i in enumerate(ids)]

    def _chunk_function(self) -> Callable[[list], ChunkResult]:
        if self.listing.paths is not None:
            return functools.partial(encode_images, self.options.image_job())
        return functools.partial(encode_table, self.listing.table, want_sum=self.options.mean,  # type: ignore[arg-type]
                                 throttle_s=self.options.throttle_s, bad_rows=self.listing.bad_rows)

    def _resume_state(self, db: str, with_mean: bool) -> Optional[tuple]:
        """Re-read the committed records: the mean so far and the first shape (--check-size)."""
        source = CaffeLmdb(db, mode="native")
        first_shape = tuple(source[0]["data"].shape) if len(source) else None
        if with_mean and self.mean is not None:
            for i in range(len(source)):
                self.mean.add(source[i]["data"], source.key(i))
        release_env(db)
        return first_shape

    def _write_chunk(self, split: Split, result: ChunkResult, writer: LmdbWriter,
                     first_shape: Optional[tuple], with_mean: bool) -> Optional[tuple]:
        names = self.listing.names
        for rec in result.records:
            name = names[int(split.order[rec.line_id])]
            key = record_key(rec.line_id, name)
            if rec.error:
                self._skip(split, rec.line_id, name, rec.error)
                continue
            first_shape = first_shape or rec.shape
            if self.options.check_size and rec.shape != first_shape:
                raise RecordError(key.decode("utf-8", "backslashreplace"),
                                  f"shape {rec.shape} differs from the first record's {first_shape} (--check-size)")
            writer.put(key, rec.value)  # type: ignore[arg-type]
            if rec.forced and len(self.forced) < 1000:  # a count and examples, not a second listing
                self.forced.append(f"{name} ({rec.forced})")
            self.forced_count += bool(rec.forced)
        if with_mean and self.mean is not None:
            for _shape, (total, count, line_id) in result.sums.items():
                where = record_key(line_id, names[int(split.order[line_id])]).decode("utf-8", "backslashreplace")
                self.mean.add_sum(total, count, where)
        self.processed += len(result.records)
        if self.progress:
            self.progress(len(result.records))
        return first_shape

    def _skip(self, split: Split, line_id: int, name: str, reason: str) -> None:
        if self.options.strict:
            index = int(split.order[line_id])
            where = self.listing.paths[index] if self.listing.paths is not None else name
            raise RecordError(where, f"{reason} (--strict: unreadable records are fatal)")
        log.warning("skipping %s: %s", name, reason)
        self.skipped.add(bo.Skipped(split.name, line_id, name, reason))


T = TypeVar("T")
R = TypeVar("R")


def tagged_call(fn: Callable[[T], R], item: Tuple[int, T]) -> Tuple[int, R]:
    """``(tag, fn(payload))`` so results of several databases can share one ordered pool."""
    tag, payload = item
    return tag, fn(payload)


def _split_facts(run: _Run, split: Split) -> dict:
    """Checksum, counts, first shape and label histogram of one finished database."""
    db = bo.db_dir(run.partial, split.name)
    facts = {"name": split.name, "path": os.path.relpath(db, run.partial), **bo.db_checksum(db)}
    facts["skipped"] = run.skipped.count(split.name)
    facts["lines"] = [split.lo, split.hi]
    source = CaffeLmdb(db, mode="native")
    facts["shape"] = list(source[0]["data"].shape) if len(source) else None
    release_env(db)
    skipped_ids = {e.line_id for e in run.skipped.entries if e.split == split.name}
    written = [i for i in range(split.lo, split.hi) if i not in skipped_ids]
    labels = run.listing.labels[split.order[written]] if written else np.zeros(0, np.int64)
    values, counts = np.unique(labels, return_counts=True)
    facts["labels"] = {str(int(v)): int(c) for v, c in zip(values, counts)}
    return facts


def _finish(run: _Run, splits: List[Split], manifest: dict, out: str) -> BuildReport:
    facts = [_split_facts(run, s) for s in splits]
    mean = None
    result: dict = {"splits": facts}
    if run.mean is not None and run.mean.count:
        result["mean_count"] = run.mean.count
        if run.options.shard[1] > 1:  # a shard keeps exact sums; merge-lmdb writes the mean
            np.save(os.path.join(run.partial, bo.MEAN_SUM), run.mean.sum)  # type: ignore[arg-type]
        else:
            mean = run.mean.mean()
            write_mean_outputs(run.partial, mean)
    if run.listing.class_names:
        bo.write_labels(run.partial, run.listing.class_names)
    forced = forced_reader(run)
    if forced:
        result["reader"] = forced  # what a reader must set, as convert_imageset's encoded records need it
    manifest.update(complete=True, result=result)
    bo.write_manifest(run.partial, manifest)
    bo.publish(run.partial, out)
    report = BuildReport(out, facts, list(run.skipped.entries), run.listing.class_names, mean, run.processed)
    report.forced = forced
    return report


def forced_reader(run: _Run) -> Optional[dict]:
    """{"force_color" or "force_gray": True, "records": n, "examples": [...]} when kept files decode natively
    to another channel count or depth (a grey JPEG in a colour build), else None."""
    count = run.forced_count
    if not count:
        return None
    return {"force_color" if run.options.color else "force_gray": True, "records": count,
            "examples": run.forced[:5]}


def _report_from_manifest(out: str) -> BuildReport:
    """``--resume`` of a build that already finished: nothing to do, report what is there."""
    manifest = bo.read_manifest(out)
    skipped = bo.SkippedLog(out).entries
    report = BuildReport(out, manifest["result"]["splits"], skipped, manifest.get("class_names"))
    report.already_complete = True
    return report
