"""The pairs side of ``feedstock build-lmdb`` (``--masks`` / ``--kind pairs``) and ``feedstock verify``."""
from __future__ import annotations

import argparse
import os
from typing import List, Mapping, Optional

from ..writers.build.pairs import IMAGES, LABELS, PairsBuildOptions, PairsCheck, build_pairs, check_pairs
from .progress import progress_bar

# build-lmdb flags that a pairs build does not take, with the value that means "not set"
_NOT_FOR_PAIRS = {"val_fraction": 0.0, "mean": False, "shard": (0, 1), "engine": "local", "resume": False,
                  "check_size": False, "label_column": None, "classes": None, "no_labels": False,
                  "encode_type": None, "reencode": False, "resize_mode": "squash"}
IGNORE_LABEL = 255  # the class id verify accepts beyond --num-classes (Caffe's usual ignore_label)


def wants_pairs(args: argparse.Namespace) -> bool:
    return getattr(args, "kind", "") == "pairs" or bool(getattr(args, "masks", None))


def build_options(args: argparse.Namespace) -> PairsBuildOptions:
    """PairsBuildOptions from build-lmdb's flags; a flag that means nothing for pairs is an error."""
    for name, unset in _NOT_FOR_PAIRS.items():
        if getattr(args, name, unset) != unset:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to a pairs build (--masks / --kind pairs)")
    height, width = args.resize if args.resize else (args.resize_height, args.resize_width)
    return PairsBuildOptions(masks=args.masks or "", root=args.root, color=not args.gray, resize=(height, width),
                             encoded=args.encoded, shuffle=args.shuffle, seed=args.seed, strict=args.strict,
                             txn_size=args.txn_size, workers=args.workers, start_method=args.start_method)


def run_build(args: argparse.Namespace) -> int:
    options = build_options(args)
    with progress_bar(None, desc="build-lmdb pairs", unit="pair", disable=args.quiet) as bar:
        report = build_pairs(args.src, args.out, options, force=args.force, progress=bar.update)
    out = os.path.abspath(args.out)
    print(f"{out}/{IMAGES} + {out}/{LABELS}: {report.written} pairs, same keys in the same order")
    print(class_pixels_line(report.classes))
    if report.skipped:
        print(f"  skipped {len(report.skipped)} pairs (listed in {out}/skipped.txt); first: {report.skipped[0]}")
    return 0


def run_verify(images: str, labels: str, args: argparse.Namespace) -> int:
    """Check the two databases key for key; print the report; 1 on any problem."""
    from ..loaders.caffe_lmdb import release_env, shared_env

    try:
        total = int(shared_env(images).env.stat()["entries"])
        with progress_bar(total, desc="verify pairs", disable=args.quiet) as bar:
            result = check_pairs(images, labels, num_classes=args.num_classes,
                                 ignore_label=IGNORE_LABEL, progress=bar.update)
    finally:
        release_env(images)  # one env per path and process: do not keep them
        release_env(labels)
    print("\n".join(pairs_report_lines(result)))
    return 1 if result.bad else 0


def pairs_report_lines(result: PairsCheck, listed: int = 20) -> List[str]:
    status = "OK" if not result.bad else f"{len(result.bad)} BAD"
    lines = [f"{result.images} + {result.labels}: {result.records} pairs {status} (keys equal, sizes match)"
             if not result.bad else f"{result.images} + {result.labels}: {result.records} pairs {status}"]
    if result.classes:
        lines.append(class_pixels_line(result.classes))
    lines.append(f"  sha256 {result.sha256}")
    lines += [f"  bad {b}" for b in result.bad[:listed]]
    if len(result.bad) > listed:
        lines.append(f"  ... and {len(result.bad) - listed} more")
    return lines


def class_pixels_line(classes: Mapping[int, int]) -> str:
    """``  class pixels: id: count (share%), ...`` in class order."""
    total = sum(classes.values()) or 1
    return "  class pixels: " + ", ".join(f"{k}: {v} ({100 * v / total:.1f}%)" for k, v in sorted(classes.items()) if v)


def pairs_databases(db: str, masks: Optional[str]) -> Optional[tuple]:
    """(images, labels) when verify is asked about pairs: ``--masks LABELS`` or a pairs build folder."""
    from ..writers.build.pairs import is_pairs_build

    if masks:
        return db, masks
    if os.path.isdir(db) and is_pairs_build(db):
        return os.path.join(db, IMAGES), os.path.join(db, LABELS)
    return None
