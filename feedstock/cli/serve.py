"""``feedstock serve``: send a Loader's batches over ZeroMQ to RemoteLoaders; ``feedstock keygen``: CURVE keys."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING, Dict, Tuple

from ..shard import check_shard, old_flag
from ..stream import add_stream_arguments, stream_from_args

if TYPE_CHECKING:
    from ..pipeline.loader import Loader

# what a server does unless told otherwise (a client may ask for another seed)
SERVE_DEFAULTS = {"seed": 0}

DESCRIPTION = """\
Run a Loader here (decode + augment on this host's CPUs) and send its batches
to trainers that read them with feedstock.RemoteLoader([...endpoints]).

  feedstock serve train_lmdb --batch-shard 0/2 --batch-size 64 --crop-size 227 --mirror \\
      --mean-value 104,117,123 --shuffle --workers 12 --bind tcp://127.0.0.1:5555

Several servers split one epoch: server j of n (--batch-shard j/n, formerly
--part) serves batches j, j+n, ... of every epoch and the client interleaves
them, so the trainer sees the batches a local Loader with the same settings and
seed would give. --shard i/n is the trainer's share of the samples (as for
train): the servers of trainer i of n in data-parallel training say --shard i/n.
Every server of a feed must get the same source and settings.

Without CURVE the server binds to loopback only (use an SSH tunnel, or):
  feedstock keygen keys/                 # keys/server.key(_secret), keys/client.key(_secret)
  feedstock serve SRC --bind tcp://*:5555 --curve-secret keys/server.key_secret
  feedstock serve SRC --bind tcp://*:5555 --curve-secret keys/server.key_secret \\
      --curve-clients keys/clients/      # only these client public keys may connect
  RemoteLoader(["tcp://host:5555"], curve_server_key="keys/server.key",
               curve_keys="keys/client.key_secret")
"""


def parse_shard(text: str) -> Tuple[int, int]:
    """``j/n`` of --batch-shard (or the old --part)."""
    try:
        return check_shard(text, "--batch-shard")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser("serve", help="send a Loader's batches to remote trainers (ZeroMQ)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bind", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint (default: loopback)")
    p.add_argument("--batch-shard", type=parse_shard, default=(0, 1), metavar="j/n",
                   help="this server's share of the batches: batches j, j+n, ... of every epoch (default 0/1)")
    p.add_argument("--part", dest="batch_shard", type=parse_shard, action=old_flag("--batch-shard"), metavar="j/n",
                   help="deprecated: --batch-shard")
    p.add_argument("--phase", choices=("train", "test"), default="train", help="test: no random crop/mirror")
    add_stream_arguments(p, skip=("engine", "address"))  # a server's own workers make its batch shard
    s = p.add_argument_group("security and liveness")
    s.add_argument("--curve-secret", help="server secret key file (feedstock keygen): encrypt and authenticate")
    s.add_argument("--curve-clients", help="folder of client public keys allowed to connect")
    s.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without CURVE")
    s.add_argument("--heartbeat", type=float, default=1.0, help="ZeroMQ heartbeat interval, seconds")
    s.add_argument("--idle-exit", type=float, help="exit after this many seconds without a client")
    p.set_defaults(func=run)

    k = subparsers.add_parser("keygen", help="make CURVE key pairs for `feedstock serve` and its clients",
                              description="Write CURVE key pairs (NAME.key public, NAME.key_secret secret) into "
                              "DIRECTORY: the server's for `feedstock serve --curve-secret`, the clients' for "
                              "RemoteLoader(curve_keys=...).")
    k.add_argument("directory", help="folder to write the key pairs into (created if missing)")
    k.add_argument("--name", action="append", help="key names (default: server and client)")
    k.add_argument("--force", action="store_true", help="overwrite existing key files of these names")
    k.set_defaults(func=keygen)


def build_loader(args: argparse.Namespace) -> Tuple["Loader", Dict[str, object]]:
    """The Loader the server runs (the stream of the flags and --config, this server's batch shard) and the
    stream's fingerprint, which every server of one feed must share."""
    stream = stream_from_args(args, defaults=SERVE_DEFAULTS)
    from ..remote.served import serve_shard  # a batch shard is the server's business, not the Loader's

    fingerprint = dict(stream.fingerprint(), phase=args.phase)
    # a server's own workers make its batch shard (a YAML's engine: ray is for trainers)
    return serve_shard(stream.build_loader(args.phase, engine="local", address=None), args.batch_shard), fingerprint


def run(args: argparse.Namespace) -> int:
    from ..remote.server import FeedServer

    loader, fingerprint = build_loader(args)
    try:
        server = FeedServer(loader, bind=args.bind, curve_secret=args.curve_secret, fingerprint=fingerprint,
                            curve_clients=args.curve_clients, insecure=args.insecure, heartbeat=args.heartbeat)
    except BaseException:
        loader.close()
        raise
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: server.stop())
    s = loader.sampler
    print(f"serving {args.source} ({s.length} records, batches of {s.batch_size}, batch shard {s.batch_shard[0]}/{s.batch_shard[1]}: "
          f"{s.num_batches} of {s.rank_batches} batches per epoch) at {server.endpoint}", file=sys.stderr,
          flush=True)
    try:
        server.run(idle_exit=args.idle_exit)
    finally:
        server.close()
    print(f"stopped after {server.sent} batches", file=sys.stderr)
    return 0


def keygen(args: argparse.Namespace) -> int:
    from ..remote.security import make_keys

    names = args.name or ["server", "client"]
    for name in names:  # every name checked before any key is written
        if not name or os.sep in name or name in (".", ".."):
            raise ValueError(f"--name {name!r} must be a plain file name")
        for path in (os.path.join(args.directory, f"{name}.key"), os.path.join(args.directory, f"{name}.key_secret")):
            if os.path.lexists(path) and not args.force:
                raise FileExistsError(f"{path!r} exists: keygen never overwrites keys (clients and servers hold "
                                      "them); pass --force to replace them or choose another folder or --name")
    if os.path.exists(args.directory) and not os.path.isdir(args.directory):
        raise ValueError(f"{args.directory!r} is not a folder")
    for name in names:
        public, secret = make_keys(args.directory, name)
        print(f"{name}: public {public}, secret {secret}")
    return 0
