"""``feedstock verify DB``: decode every record, check shapes and labels, print counts and a checksum."""
from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass, field
from typing import Counter, List, Optional, Tuple

from google.protobuf.message import DecodeError

from ..caffe_pb import Datum
from ..errors import RecordError
from ..writers.build import output as bo
from ..writers.build.encode import reason_of
from ..writers.lmdb_writer import is_lmdb
from ..writers.mean import datum_pixels
from .progress import add_quiet_flag, progress_bar

DESCRIPTION = """\
Read every record of a Caffe LMDB: parse the Datum, decode encoded images
(native channels, as compute_image_mean), check that all records share the first
record's shape and that labels lie in [0, --num-classes). Prints the record
count, shape, label range and histogram, and a sha256 over all keys and values
(len(key) key len(value) value, 8-byte little-endian lengths, key order) that
also matches the build.json of a feedstock build. A dataset folder with
train_lmdb/val_lmdb is verified database by database. Exits 1 on any bad record,
naming its key.
"""
MAX_LISTED = 20


@dataclass
class DbCheck:
    """What verify found in one database."""

    path: str
    records: int = 0
    shape: Optional[Tuple[int, ...]] = None
    dtype: str = ""
    labels: Counter = field(default_factory=Counter)
    sha256: str = ""
    bad: List[str] = field(default_factory=list)  # "key: reason"


def register(subparsers) -> None:
    p = subparsers.add_parser("verify", help="decode and check every record of an LMDB",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("db", metavar="DB", help="LMDB directory, or a build folder holding train_lmdb/val_lmdb")
    p.add_argument("--num-classes", type=int, help="labels must lie in [0, N)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--force-color", action="store_true", help="decode encoded records as 3 channels (Caffe's "
                   "force_color: grey or 16-bit files kept by --encoded)")
    g.add_argument("--force-gray", action="store_true", help="decode encoded records as 1 channel (force_gray)")
    p.add_argument("--masks", metavar="LABELS", help="segmentation pairs: DB is the image LMDB and LABELS the "
                   "label LMDB; both must match key for key (a build-lmdb --masks folder is found by itself)")
    add_quiet_flag(p)
    p.set_defaults(func=run)


def check_db(path: str, *, num_classes: Optional[int] = None, progress=None, mode: str = "native") -> DbCheck:
    """Decode every record of one LMDB (encoded ones in ``mode``) and collect counts, shape, labels,
    checksum and bad records."""
    result = DbCheck(path)
    digest = hashlib.sha256()
    for key, value in bo.iter_db(path):
        bo.checksum_record(digest, key, value)  # the sha256 a build records in build.json
        result.records += 1
        name = key.decode("utf-8", "backslashreplace")
        problem = _check_record(result, name, value, num_classes, mode)
        if problem:
            result.bad.append(f"{name}: {problem}{_encoded_hint(value, problem)}")
        if progress is not None:
            progress(1)
    result.sha256 = digest.hexdigest()
    return result


def _check_record(result: DbCheck, name: str, value: bytes, num_classes: Optional[int], mode: str) -> str:
    try:
        pixels, label = datum_pixels(value, name, mode)
    except RecordError as e:
        return reason_of(e)
    result.labels[label] += 1
    if result.shape is None:
        result.shape, result.dtype = tuple(pixels.shape), str(pixels.dtype)
    elif tuple(pixels.shape) != result.shape:
        return f"shape {tuple(pixels.shape)} differs from the first record's {result.shape}"
    if num_classes is not None and not 0 <= label < num_classes:
        return f"label {label} outside [0, {num_classes})"
    return ""


def _encoded_hint(value: bytes, problem: str) -> str:
    """For an encoded record of another channel count or bit depth: how to rebuild the database."""
    if "shape" not in problem and "dtype" not in problem:
        return ""
    try:
        encoded = Datum.FromString(value).encoded
    except DecodeError:
        return ""
    return (" (a file kept byte for byte by --encoded: verify with --force-color/--force-gray as its readers "
            "decode it, or rebuild with build-lmdb --encoded --reencode)") if encoded else ""


def databases(path: str) -> List[Tuple[str, str]]:
    """(split name, LMDB path) pairs: the path itself, or the *_lmdb folders of a build folder."""
    if is_lmdb(path):
        return [("", path)]
    found = [(n[:-5], os.path.join(path, n)) for n in sorted(os.listdir(path)) if n.endswith("_lmdb")
             and is_lmdb(os.path.join(path, n))] if os.path.isdir(path) else []
    if not found:
        raise ValueError(f"{path!r} is not an LMDB directory (no data.mdb) nor a folder of *_lmdb databases")
    return found


def expected_checksum(root: str, split: str) -> Optional[str]:
    """The sha256 a feedstock build recorded for this database, if ``root`` is a build folder."""
    if not bo.is_build_output(root):
        return None
    for facts in bo.read_manifest(root).get("result", {}).get("splits", []):
        if facts.get("name") == split:
            return facts.get("sha256")
    return None


def run(args: argparse.Namespace) -> int:
    from . import pairs_cmds

    pairs = pairs_cmds.pairs_databases(args.db, args.masks)
    if pairs is not None:
        return pairs_cmds.run_verify(*pairs, args)  # type: ignore[call-arg]
    failed = False
    from ..loaders.caffe_lmdb import release_env, shared_env

    for split, path in databases(args.db):
        total = int(shared_env(path).env.stat()["entries"])
        try:
            with progress_bar(total, desc=f"verify {split or 'lmdb'}", disable=args.quiet) as bar:
                mode = "color" if args.force_color else "gray" if args.force_gray else "native"
                result = check_db(path, num_classes=args.num_classes, progress=bar.update, mode=mode)
        finally:
            release_env(path)  # py-lmdb allows one env per path and process: do not keep it
        recorded = expected_checksum(args.db, split)
        if recorded is not None and recorded != result.sha256:
            result.bad.append(f"(database): sha256 {result.sha256} differs from build.json's {recorded}")
        print("\n".join(report_lines(result, recorded)))
        failed = failed or bool(result.bad)
    return 1 if failed else 0


def report_lines(result: DbCheck, recorded: Optional[str]) -> List[str]:
    shape = "x".join(map(str, result.shape)) if result.shape else "-"
    labels = sorted(result.labels)
    status = "OK" if not result.bad else f"{len(result.bad)} BAD"
    lines = [f"{result.path}: {result.records} records {status}, shape {shape} {result.dtype}".rstrip()]
    if labels:
        histogram = ", ".join(f"{k}: {result.labels[k]}" for k in labels[:50])
        lines.append(f"  labels {labels[0]}..{labels[-1]} ({len(labels)} distinct): {histogram}")
    lines.append(f"  sha256 {result.sha256}" + (" (matches build.json)" if recorded == result.sha256 else ""))
    lines += [f"  bad record {b}" for b in result.bad[:MAX_LISTED]]
    if len(result.bad) > MAX_LISTED:
        lines.append(f"  ... and {len(result.bad) - MAX_LISTED} more bad records")
    return lines
