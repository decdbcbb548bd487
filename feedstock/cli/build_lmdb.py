"""``feedstock build-lmdb SRC OUT``: convert_imageset, parallel, resumable, checked, with DIGITS conveniences."""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from typing import Callable, List, Optional, Tuple

from ..loaders.csv_classes import read_classes
from ..shard import check_shard
from ..stream.check import START_METHODS
from ..writers.build.builder import BuildOptions, BuildReport, build_lmdb
from ..writers.build.encode import RESIZE_MODES
from ..writers.build.output import SKIPPED
from ..writers.build.plan import KINDS
from ..writers.mean import mean_value_block
from .progress import add_quiet_flag, progress_bar

DESCRIPTION = """\
Convert images or tables into a Caffe LMDB of Datums, as Caffe's convert_imageset
does (same keys %08d_<path>, raw Datums CHW BGR with encoded=false, encoded
Datums without C/H/W, squash resize with cv2 INTER_LINEAR), in parallel.

SRC is an image folder (one subfolder per class; labels.txt is written), a Caffe
list file '<path> <label>' (paths relative to --root-folder), a CSV table (features ->
float Datums of shape (F,1,1), label from --label-column, which must exist unless
--no-labels) or an HDF5 file or list. CSV class names Class_<n> get code n-1
(by number, whatever the file holds; other names in natural order); labels.txt
keeps the list: pass it with --classes when building validation and test files.

OUT, OUT.partial and OUT.parts are never read as source data, even inside SRC; an
OUT that is SRC, holds SRC or holds source records is refused (nothing removed).
With --encoded, files are kept byte for byte as convert_imageset keeps them, also
grayscale, alpha and 16-bit ones: the summary and build.json count those and name the
setting readers need (force_color, or force_gray with --gray); --reencode re-encodes
them to the dataset's channels in 8 bits instead.

The build writes to OUT.partial and renames it to OUT at the end: an interrupted
build never leaves a database at OUT; --resume continues it and gives the same
bytes as an uninterrupted build. Unreadable images are skipped (listed in
OUT/skipped.txt) unless --strict. With --shard i/N each machine builds a
contiguous part of the same plan with the final keys; join the parts with
'feedstock merge-lmdb'.

With --engine ray the decode/resize/encode work runs as Ray Data tasks (a local
Ray instance of --workers CPUs, or the cluster at --address): one shard build
per partition under OUT.parts (which, like SRC, must be on a filesystem every
node mounts at the same path), merged into OUT with the same bytes as the local
engine. Needs the extra: pip install 'feedstock[ray]'.
"""


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0))))


def parse_shard(text: str) -> Tuple[int, int]:
    """``i/n`` of --shard: the i-th of n shares of the records (feedstock.shard)."""
    try:
        return check_shard(text, "--shard")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_size(text: str) -> Tuple[int, int]:
    """``HxW`` (or one number for a square) as (height, width)."""
    parts = text.lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (-1, -1)
    except ValueError:
        h = w = -1
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW with positive integers, e.g. 256x256")
    return h, w


def register(subparsers) -> None:
    p = subparsers.add_parser("build-lmdb", help="build a Caffe LMDB from images, a list file, CSV or HDF5",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="image folder, list file, .csv table, .h5 file or HDF5 list")
    p.add_argument("out", metavar="OUT", help="output LMDB directory (a folder with train_lmdb/val_lmdb "
                   "when --val-fraction is set)")
    g = p.add_argument_group("source")
    # the stream's spellings (train, bench, inspect ...) first; Caffe's tool spellings stay as aliases.
    # No "lmdb" choice: an LMDB is what this command writes, not a source it converts.
    g.add_argument("--source-type", "--kind", dest="kind", choices=("auto",) + KINDS + ("pairs",),
                   default="auto", help="how to read SRC (default: guess from the path); pairs: SRC is a pairs "
                   "list file ('<image> <mask>' lines) or, with --masks, an images folder")
    g.add_argument("--masks", help="segmentation pairs: the masks folder (matched to SRC's images by stem); "
                   "writes OUT/images_lmdb and OUT/labels_lmdb with the same keys")
    g.add_argument("--root-folder", "--root", dest="root", default="", help="list files: prefix of every "
                   "path (Caffe ROOTFOLDER, plain concatenation: end it with '/')")
    g.add_argument("--label-column", help="CSV: label column name (default target, which must then exist); "
                   "HDF5: label dataset name (default label)")
    g.add_argument("--no-labels", action="store_true", help="CSV/HDF5: the file has no label column (every "
                   "label 0); without it a missing label column is an error")
    g.add_argument("--classes", metavar="LABELS", help="CSV, image folders, list files: the dataset's class list, labels.txt of the "
                   "training build (or that build folder): codes follow it, a class outside it is an error; "
                   "use it for validation and test files")
    g = p.add_argument_group("images (convert_imageset flags)")
    g.add_argument("--new-height", "--resize-height", dest="resize_height", type=int, default=0,
                   help="resize height; resizing needs both sizes (convert_imageset: --resize_height)")
    g.add_argument("--new-width", "--resize-width", dest="resize_width", type=int, default=0,
                   help="resize width; resizing needs both sizes (convert_imageset: --resize_width)")
    g.add_argument("--resize", type=parse_size, metavar="HxW", help="shorthand for both resize sizes")
    g.add_argument("--resize-mode", choices=RESIZE_MODES, default="squash",
                   help="squash (Caffe, default) or the DIGITS modes crop, fill, half_crop")
    g.add_argument("--gray", action="store_true", help="decode as one grey channel")
    g.add_argument("--encoded", action="store_true", help="store encoded images (file bytes kept when "
                   "nothing changes, else re-encoded)")
    g.add_argument("--encode-type", choices=("jpg", "png"), help="re-encode as this format (implies --encoded; "
                   "default with --encoded: each file's own format)")
    g.add_argument("--reencode", action="store_true", help="with --encoded: re-encode files that readers would "
                   "decode to another channel count or bit depth (grayscale, alpha, 16-bit) with the dataset's "
                   "channels and 8 bits; without it they keep their bytes (Caffe) and readers need force_color")
    g.add_argument("--check-size", action="store_true", help="fail unless every record has the first one's shape")
    g = p.add_argument_group("order, splits, outputs")
    g.add_argument("--shuffle", action="store_true", help="shuffle the records (reproducible from --seed)")
    g.add_argument("--seed", type=int, default=0, help="seed of shuffle, val split and fill noise (default 0)")
    g.add_argument("--val-fraction", type=float, default=0.0, help="per-class fraction written to OUT/val_lmdb "
                   "(the rest to OUT/train_lmdb)")
    g.add_argument("--mean", action="store_true", help="write OUT/mean.binaryproto (compute_image_mean layout) "
                   "and OUT/mean.npy of the (train) database, and print mean_value lines")
    g = p.add_argument_group("running")
    g.add_argument("--workers", type=int, default=default_workers(), help="decode/encode processes "
                   "(0: in this process; default %(default)s); --engine ray: CPUs of the local Ray instance "
                   "(0: all)")
    g.add_argument("--start-method", choices=START_METHODS, default="auto",
                   help="how worker processes start (default: the pool's choice, fork when safe)")
    g.add_argument("--txn-size", type=int, default=1000, help="records per LMDB transaction (default 1000)")
    g.add_argument("--strict", action="store_true", help="an unreadable image is fatal (non-zero exit)")
    g.add_argument("--resume", action="store_true", help="continue the interrupted build at OUT.partial "
                   "(--engine ray: reuse the finished partitions in OUT.parts)")
    g.add_argument("--force", action="store_true", help="replace an existing OUT (and OUT.partial, OUT.parts)")
    g.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="i/N", help="build shard i of N: the i-th of N contiguous shares of the records (merge-lmdb joins them)")
    g = p.add_argument_group("engine")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine (default); ray: Ray Data tasks")
    g.add_argument("--address", help="--engine ray: the Ray cluster to use (HEAD:6379 or auto; default: "
                   "start a local Ray instance with --workers CPUs)")
    g.add_argument("--partitions", type=int, help="--engine ray: shard builds to run and merge (default: "
                   "4 per Ray CPU, at least 256 records each)")
    g.add_argument("--throttle-ms", type=float, default=0.0, help=argparse.SUPPRESS)  # tests: slow builds
    add_quiet_flag(g)
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    height, width = args.resize if args.resize else (args.resize_height, args.resize_width)
    encoding: Optional[str] = args.encode_type if args.encode_type else ("" if args.encoded else None)
    return BuildOptions(kind=args.kind, root=args.root, label_column=args.label_column, color=not args.gray,
                        resize_height=height, resize_width=width, resize_mode=args.resize_mode,
                        encoding=encoding, shuffle=args.shuffle, seed=args.seed, check_size=args.check_size,
                        val_fraction=args.val_fraction, mean=args.mean, strict=args.strict, shard=args.shard,
                        workers=args.workers, txn_size=args.txn_size, throttle_s=args.throttle_ms / 1000.0,
                        start_method=args.start_method, no_labels=args.no_labels, reencode=args.reencode,
                        classes=tuple(read_classes(args.classes)) if args.classes else None)


def check_engine_args(args: argparse.Namespace) -> None:
    """Flags that only mean something with one engine: refuse them with the other (ValueError)."""
    if args.engine != "ray":
        for flag in ("address", "partitions"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag} applies to --engine ray only")
    elif args.shard != (0, 1):
        raise ValueError("--shard applies to --engine local: the ray engine partitions the build itself")


def engine(args: argparse.Namespace) -> Callable[..., BuildReport]:
    """The build function of ``--engine``: ``build_lmdb`` or the Ray one with the cluster arguments."""
    if args.engine == "local":
        return build_lmdb
    from ..writers.build.on_ray import build_lmdb_ray, import_ray

    import_ray()  # ImportError with the install hint; importing ray.data also sets up its loggers
    level = logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    if level > logging.INFO:  # Ray's INFO lines (instance start, dataset plans) would bury bar and summary
        logging.getLogger("ray.data").setLevel(level)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled": ours show
    return functools.partial(build_lmdb_ray, address=args.address, partitions=args.partitions,
                             init_kwargs={"logging_level": level})


def run(args: argparse.Namespace) -> int:
    from . import pairs_cmds

    check_engine_args(args)
    if pairs_cmds.wants_pairs(args):
        return pairs_cmds.run_build(args)
    options = options_from_args(args)
    try:
        build = engine(args)
    except ImportError as e:  # the ray extra is not installed
        print(f"feedstock build-lmdb: error: {e}", file=sys.stderr)
        return 1
    bar = None

    def on_total(total: int, done: int) -> None:
        nonlocal bar
        bar = progress_bar(total, desc="build-lmdb", unit="img", initial=done, disable=args.quiet)

    try:
        report = build(args.src, args.out, options, force=args.force, resume=args.resume,
                       progress=lambda n: bar.update(n) if bar else None, on_total=on_total)
    except KeyboardInterrupt:
        work = ".parts" if args.engine == "ray" else ".partial"
        print(f"\ninterrupted: what was committed is in {os.path.abspath(args.out)}{work}; run the same "
              "command with --resume to continue", file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()
    print("\n".join(summary_lines(report)))
    return 0


def summary_lines(report: BuildReport) -> List[str]:
    """The end-of-build summary: databases, counts, labels, skipped, speed, mean."""
    if report.already_complete:
        return [f"{report.out} is already complete (nothing to resume)"] + _db_lines(report)
    lines = [f"wrote {report.out}" + (" (resumed)" if report.resumed else "")] + _db_lines(report)
    if report.skipped:
        lines.append(f"  skipped {len(report.skipped)} unreadable record(s): see "
                     f"{os.path.join(report.out, SKIPPED)}")
    if report.forced:
        flag = "force_color" if report.forced.get("force_color") else "force_gray"
        lines.append(f"  {report.forced['records']} record(s) (e.g. {report.forced['examples'][0]}) keep their file "
                     f"bytes as convert_imageset --encoded does: readers must decode them with {flag} (Caffe: "
                     f"transform_param {{ {flag}: true }}; feedstock: --{flag.replace('_', '-')}); --reencode "
                     "stores them re-encoded instead")
    rate = report.processed / report.elapsed_s if report.elapsed_s > 0 else 0.0
    lines.append(f"  {report.processed} records processed in {report.elapsed_s:.2f} s "
                 f"({rate:.1f} records/s, {report.workers} workers)")
    if report.class_names:
        lines.append(f"  {len(report.class_names)} classes: {os.path.join(report.out, 'labels.txt')}")
    if report.mean is not None:
        lines.append(f"  mean: {os.path.join(report.out, 'mean.binaryproto')} and mean.npy")
        lines.append(mean_value_block(report.mean))
    return lines


def _db_lines(report: BuildReport) -> List[str]:
    lines = []
    for facts in report.splits:
        shape = "x".join(str(d) for d in facts["shape"]) if facts.get("shape") else "-"
        labels = sorted(int(k) for k in facts.get("labels", {}))
        label_text = f"labels {labels[0]}..{labels[-1]}" if labels else "no labels"
        lines.append(f"  {facts['path'] if facts['path'] != '.' else 'lmdb'}: {facts['records']} records, "
                     f"{facts['skipped']} skipped, shape {shape}, {label_text}, sha256 {facts['sha256'][:16]}")
    return lines
