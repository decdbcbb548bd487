"""``feedstock merge-lmdb OUT SHARD...``: join the shards of ``build-lmdb --shard i/N`` into one database."""
from __future__ import annotations

import argparse
import os

from ..writers.build.merge import merge_lmdb
from ..writers.build.output import db_dir, is_build_output, read_manifest
from ..writers.lmdb_writer import is_lmdb
from ..writers.mean import mean_value_block
from .progress import add_quiet_flag, progress_bar

DESCRIPTION = """\
Join shards into one LMDB equal to the single-machine build. Shards made by
'feedstock build-lmdb --shard i/N' already hold their final keys (each shard
writes its contiguous range of the shared plan with the global %08d line
numbers), so their records are copied in shard order after checking that they
come from the same plan and that shards 0..N-1 are all there; train/val
databases, labels.txt, skipped.txt and the mean (from the shards' exact sums)
are merged too. Plain LMDBs (no build.json, e.g. convert_imageset outputs of
list parts) are renumbered instead: each shard's %08d prefixes are shifted by
the line count of the shards before it, so keys continue in the given order.
Writes OUT.partial and renames it to OUT at the end.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("merge-lmdb", help="join build-lmdb shards into one database",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", metavar="OUT", help="merged output")
    p.add_argument("shards", metavar="SHARD", nargs="+", help="shard outputs (any order for feedstock shards)")
    p.add_argument("--force", action="store_true", help="replace an existing OUT")
    p.add_argument("--txn-size", type=int, default=1000, help="records per transaction (default 1000)")
    add_quiet_flag(p)
    p.set_defaults(func=run)


def _total(shards) -> int:
    from ..loaders.caffe_lmdb import release_env, shared_env

    total = 0
    for shard in shards:
        splits = read_manifest(shard)["plan"]["splits"] if is_build_output(shard) else [{"name": ""}]
        for split in splits:
            path = db_dir(shard, split["name"])
            if is_lmdb(path):
                total += int(shared_env(path).env.stat()["entries"])
                release_env(path)
    return total


def run(args: argparse.Namespace) -> int:
    with progress_bar(_total(args.shards), desc="merge-lmdb", disable=args.quiet) as bar:
        manifest = merge_lmdb(args.out, args.shards, force=args.force, txn_size=args.txn_size,
                              progress=bar.update)
    print(f"wrote {os.path.abspath(args.out)} from {len(args.shards)} shards"
          + (" (keys renumbered)" if manifest.get("renumbered") else ""))
    for facts in manifest["result"]["splits"]:
        print(f"  {facts['path'] if facts['path'] != '.' else 'lmdb'}: {facts['records']} records, "
              f"{facts['skipped']} skipped, keys {facts['first_key']} .. {facts['last_key']}, "
              f"sha256 {facts['sha256'][:16]}")
    if "mean_count" in manifest["result"]:
        from ..caffe_pb import read_mean_file

        print(mean_value_block(read_mean_file(os.path.join(args.out, "mean.binaryproto"))))
    return 0
