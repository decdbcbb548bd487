"""``feedstock compute-mean DB [OUT.binaryproto]``: Caffe's compute_image_mean, with a progress bar."""
from __future__ import annotations

import argparse

import numpy as np

from ..caffe_pb import write_mean_file
from ..writers.lmdb_writer import is_lmdb
from ..writers.mean import channel_means, compute_db_mean, mean_value_block
from .progress import add_quiet_flag, progress_bar

DESCRIPTION = """\
Mean image of a Caffe LMDB exactly as compute_image_mean computes it: Datums in
key order, encoded ones decoded with their native channel count, one float32
running sum per element divided by the count. The .binaryproto uses the legacy
num/channels/height/width fields (num=1), CHW in the Datums' channel order (BGR
for convert_imageset databases). The per-channel means are printed as
'mean_value:' lines ready for a prototxt.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("compute-mean", help="mean image of an LMDB (compute_image_mean)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("db", metavar="DB", help="LMDB directory of Datums")
    p.add_argument("out", metavar="OUT", nargs="?", help="mean.binaryproto to write (optional, as in Caffe)")
    p.add_argument("--npy", metavar="PATH", help="also write the (C, H, W) float32 mean as .npy")
    add_quiet_flag(p)
    p.set_defaults(func=run)


def _entries(path: str) -> int:
    from ..loaders.caffe_lmdb import shared_env

    return int(shared_env(path).env.stat()["entries"])


def check_outputs(args: argparse.Namespace) -> None:
    """OUT and --npy: files outside the database, not the same file twice (checked before reading)."""
    from ..outputs import check_file_output, check_output, resolved

    named = [(flag, path) for flag, path in (("OUT", args.out), ("--npy", args.npy)) if path]
    for flag, path in named:
        check_output(path, flag=flag, inputs=[args.db])
        check_file_output(path, flag=flag, inputs=[args.db])
    if len(named) == 2 and resolved(args.out) == resolved(args.npy):
        raise ValueError(f"OUT and --npy name the same file {args.out!r}: give two names")


def run(args: argparse.Namespace) -> int:
    if not is_lmdb(args.db):
        raise ValueError(f"{args.db!r} is not an LMDB directory (no data.mdb)")
    check_outputs(args)
    from ..loaders.caffe_lmdb import release_env
    from ..outputs import atomic_file

    try:
        with progress_bar(_entries(args.db), desc="compute-mean", disable=args.quiet) as bar:
            mean, count = compute_db_mean(args.db, progress=bar.update)
    finally:
        release_env(args.db)  # py-lmdb allows one env per path and process: do not keep it
    if args.out:
        with atomic_file(args.out) as tmp:
            write_mean_file(tmp, mean)
    if args.npy:
        with atomic_file(args.npy) as tmp, open(tmp, "wb") as f:
            np.save(f, mean)
    c, h, w = mean.shape
    print(f"{count} records, mean image {c}x{h}x{w}" + (f" written to {args.out}" if args.out else ""))
    for i, value in enumerate(channel_means(mean)):
        print(f"mean_value channel [{i}]: {value:.6g}")
    print(mean_value_block(mean))
    return 0
