"""Join the shards of a build (``build-lmdb --shard i/N``) into the database one machine would have built.

Shards of a feedstock build already carry their final keys: every shard
computes the same plan and writes its contiguous range of line ids with the
global ``%08d`` numbers, so merging is a copy in shard order, checked (same
plan digests, shards 0..N-1 each once, keys increasing across shards). The
result's keys, values and order equal the single-machine build; the mean is
recomputed from the shards' exact sums, so it is bit-identical too.

Plain LMDBs without a build manifest (say, convert_imageset runs on parts of a
list) are renumbered instead: shard s's ``%08d`` prefixes are shifted by the
line count of the shards before it, so the keys continue (gaps kept).
"""
from __future__ import annotations

import os
import re
import shutil
from typing import Callable, List, Optional, Tuple

import numpy as np

from ...loaders.caffe_lmdb import release_env
from . import output as bo
from .safety import check_not_source, output_paths
from ..lmdb_writer import LmdbWriter, is_lmdb
from ..mean import ExactMean, write_mean_outputs

_PREFIX = re.compile(rb"\A([0-9]+)")
Progress = Optional[Callable[[int], None]]


def merge_lmdb(out: str, shards: List[str], *, force: bool = False, txn_size: int = 1000,
               progress: Progress = None) -> dict:
    """Merge ``shards`` into ``out`` (via ``out.partial``); returns the merged manifest."""
    if not shards:
        raise ValueError("merge needs at least one shard")
    out = os.path.abspath(out)
    for shard in shards:  # --force must never remove a shard (out is, or holds, one)
        check_not_source(shard, output_paths(out))
    partial, _ = bo.prepare_output(out, force=force, resume=False)
    try:
        if all(bo.is_build_output(s) for s in shards):
            manifest = _merge_builds(partial, [os.path.abspath(s) for s in shards], txn_size, progress)
        else:
            manifest = _merge_plain(partial, shards, txn_size, progress)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # nothing to resume: a merge is cheap to redo
        raise
    bo.write_manifest(partial, manifest)
    bo.publish(partial, out)
    return manifest


def _ordered_shards(shards: List[str]) -> List[Tuple[str, dict]]:
    """Shards sorted by index, checked to be parts 0..N-1 of one plan."""
    manifests = [(s, bo.read_manifest(s)) for s in shards]
    for path, m in manifests:
        if not m.get("complete"):
            raise ValueError(f"shard {path!r} is not a complete build")
    plan = manifests[0][1]["plan"]
    for path, m in manifests[1:]:
        problem = bo.plan_mismatch(plan, m["plan"])
        if problem:
            raise ValueError(f"shard {path!r} comes from a different build plan ({problem})")
    count = manifests[0][1]["shard"][1]
    indices = sorted(m["shard"][0] for _, m in manifests)
    if indices != list(range(count)) or any(m["shard"][1] != count for _, m in manifests):
        raise ValueError(f"need shards 0..{count - 1} of {count} exactly once, got indices {indices}")
    return sorted(manifests, key=lambda pm: pm[1]["shard"][0])


def _merge_builds(partial: str, shards: List[str], txn_size: int, progress: Progress) -> dict:
    ordered = _ordered_shards(shards)
    first = ordered[0][1]
    splits = [s["name"] for s in first["plan"]["splits"]]
    skipped = bo.SkippedLog(partial)
    for split in splits:
        _copy_split(partial, split, [path for path, _ in ordered], progress, txn_size)
        for path, _ in ordered:
            for entry in bo.SkippedLog(path).entries:
                if entry.split == split:
                    skipped.add(entry)
    manifest = {k: v for k, v in first.items() if k not in ("result", "shard")}
    manifest.update(shard=[0, 1], merged_from=[path for path, _ in ordered], complete=True)
    facts = []
    for split in splits:
        db = bo.db_dir(partial, split)
        facts.append({"name": split, "path": os.path.relpath(db, partial), **bo.db_checksum(db),
                      "skipped": skipped.count(split), **_shard_facts(ordered, split)})
        _release(db)
    manifest["result"] = {"splits": facts}
    _merge_reader(ordered, manifest["result"])
    _merge_mean(partial, ordered, manifest["result"])
    if first.get("class_names"):
        bo.write_labels(partial, first["class_names"])
    return manifest


def _merge_reader(ordered: List[Tuple[str, dict]], result: dict) -> None:
    """The shards' reader settings (kept files that need force_color/force_gray), counts summed."""
    readers = [m["result"]["reader"] for _, m in ordered if m.get("result", {}).get("reader")]
    if readers:
        merged = dict(readers[0], records=sum(r["records"] for r in readers))
        merged["examples"] = [e for r in readers for e in r.get("examples", [])][:5]
        result["reader"] = merged


def _shard_facts(ordered: List[Tuple[str, dict]], split: str) -> dict:
    """Label histogram, first shape and line range of a split, summed over the shards."""
    labels: dict = {}
    shape, lines = None, [0, 0]
    for _, m in ordered:
        for f in m["result"]["splits"]:
            if f["name"] != split:
                continue
            for k, v in f.get("labels", {}).items():
                labels[k] = labels.get(k, 0) + v
            shape = shape or f.get("shape")
            lines[1] = max(lines[1], f.get("lines", [0, 0])[1])
    return {"labels": dict(sorted(labels.items(), key=lambda kv: int(kv[0]))), "shape": shape, "lines": lines}


def _copy_split(partial: str, split: str, shard_paths: List[str], progress: Progress, txn_size: int) -> None:
    db = bo.db_dir(partial, split)
    previous: Optional[bytes] = None
    with LmdbWriter(db, txn_size=txn_size) as writer:
        for shard in shard_paths:
            source = bo.db_dir(shard, split)
            if not is_lmdb(source):
                raise ValueError(f"shard {shard!r} has no {split or 'main'} database at {source!r}")
            for key, value in bo.iter_db(source):
                if previous is not None and key <= previous:
                    raise ValueError(f"shard {shard!r}: key {key!r} does not follow {previous!r}; "
                                     "were the shards built with the same plan?")
                writer.put(key, value)
                previous = key
                if progress:
                    progress(1)
            _release(source)


def _merge_mean(partial: str, ordered: List[Tuple[str, dict]], result: dict) -> None:
    """The mean over all shards from their exact float64 sums (bit-identical to one machine's build)."""
    if not any("mean_count" in m.get("result", {}) for _, m in ordered):
        return
    total = ExactMean()
    for path, m in ordered:
        count = m["result"].get("mean_count", 0)
        if count:
            total.add_sum(np.load(os.path.join(path, bo.MEAN_SUM)), count, path)
    if total.count:
        write_mean_outputs(partial, total.mean())
        result["mean_count"] = total.count


def renumber(key: bytes, offset: int) -> Tuple[bytes, int]:
    """(key with its numeric prefix shifted by ``offset``, the old number); %08d padding kept."""
    match = _PREFIX.match(key)
    if match is None:
        raise ValueError(f"key {key!r} has no numeric prefix to renumber")
    old = int(match.group(1))
    width = max(8, len(match.group(1)))
    return f"{old + offset:0{width}d}".encode() + key[match.end():], old


def _merge_plain(partial: str, shards: List[str], txn_size: int, progress: Progress) -> dict:
    offset = 0
    with LmdbWriter(partial, txn_size=txn_size) as writer:
        for shard in shards:
            if not is_lmdb(shard):
                raise ValueError(f"shard {shard!r} is neither a feedstock build nor an LMDB directory")
            last = -1
            for key, value in bo.iter_db(shard):
                new_key, last = renumber(key, offset)
                writer.put(new_key, value)
                if progress:
                    progress(1)
            _release(shard)
            offset += last + 1
    facts = {"name": "", "path": ".", **bo.db_checksum(partial), "skipped": 0}
    _release(partial)
    return {"format": bo.FORMAT, "complete": True, "merged_from": [os.path.abspath(s) for s in shards],
            "renumbered": True, "shard": [0, 1], "result": {"splits": [facts]}}


def _release(path: str) -> None:
    """Close this process's read env on a shard or the output (py-lmdb: one env per path)."""
    release_env(path)
