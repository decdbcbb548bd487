"""``feedstock bench``: throughput of a stream on this machine, stage by stage, with a verdict."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, List, Optional

from ..pipeline.auto import CONSUMER_THREADS, REPEATS
from .progress import add_quiet_flag, progress_bar

DESCRIPTION = """\
Measure a stream on your own data before training: the source alone (records/s,
MB/s), its decoding alone, the transforms alone, all three in this process (the
1-core rate), then the full Loader at each worker count against the machine's
ceiling (usable cores x the 1-core rate), the memory per worker and of the
slots, and a verdict: the stage that bounds throughput (read, decode,
transforms, hand-off to the consumer, or cores) and the worker count to use.

  feedstock bench train_lmdb --crop-size 227 --mirror --mean-value 104,117,123
  feedstock bench train.csv --batch-size 256 --workers 0,1,2 --json
  feedstock bench images/ --new-height 256 --new-width 256 --plot bench.png
  feedstock bench train_lmdb --compare torch        # torch's DataLoader, same run
  feedstock bench --caffe-layer "{'source': 'train_lmdb', 'batch_size': 64}"
  feedstock bench train_lmdb --device               # pinned H2D and feed overlap (GPU)
  feedstock bench --dataset mydata:make_dataset --compare torch   # your own Python dataset

The stream flags are those of train and serve; the sweep's worker counts are
--workers (default 1, 2, then doubling up to the usable cores; 0 = in-process
is always measured). The stages take about --seconds in all; each worker count
gets about --seconds of steady state, split over --repeats interleaved windows,
and shows its median and range. The recommendation is the rule workers="auto"
applies to the same kind of windows: the fewest workers whose median lies in the
range of the best count, workers plus --consumer-threads within the usable cores.
"""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from ..stream import add_stream_arguments

    p = subparsers.add_parser("bench", help="throughput of a stream: stages, workers, memory, verdict",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?", metavar="SOURCE", help="LMDB, list file, image folder, CSV, HDF5 or pairs")
    add_stream_arguments(p, source=False, skip=("workers",))
    g = p.add_argument_group("bench")
    g.add_argument("--workers", dest="sweep_workers", metavar="N,N,...", help="worker counts to run the Loader at (e.g. 1,2,4)")
    g.add_argument("--seconds", type=float, default=1.0,
                   help="seconds for the stages step, and of steady state per worker count (default 1)")
    g.add_argument("--repeats", type=int, default=REPEATS,
                   help=f"interleaved windows per worker count, for the median and range (default {REPEATS})")
    g.add_argument("--consumer-threads", type=int, default=CONSUMER_THREADS,
                   help="threads of your trainer that need a core beside the workers (default 1)")
    g.add_argument("--phase", default="train", help="train (random crops, mirror) or test")
    g.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")
    g.add_argument("--plot", metavar="FILE.png", help="write throughput against workers, with the ceiling")
    g.add_argument("--compare", choices=("torch",), help="also run torch's DataLoader on the same stream")
    g.add_argument("--caffe-layer", metavar="PARAM_STR", help="time the Caffe DataLayer's forward() with this param_str")
    g.add_argument("--steps", type=int, default=50, help="--caffe-layer: forwards to time (default 50)")
    g.add_argument("--step-ms", type=float, default=0.0, help="--caffe-layer/--device: simulated solver step")
    g.add_argument("--device", action="store_true", help="pinned host-to-device bandwidth and feed overlap")
    g.add_argument("--dataset", metavar="MODULE:FACTORY", help="bench your own map-style dataset (e.g. a torch "
                   "Dataset) that MODULE:FACTORY() returns; see feedstock.benchtool.user_dataset")
    add_quiet_flag(p)
    p.set_defaults(func=run)


def _steps(args: argparse.Namespace, counts: Optional[List[int]]) -> int:
    from ..benchtool.sweep import default_counts
    from ..pipeline.machine import usable_cores

    n = 0
    if args.source or args.dataset:
        n = 2 + len([c for c in (counts or default_counts(usable_cores())) if c > 0])
        n += int(args.compare is not None) + int(args.device)
    return n + int(bool(args.caffe_layer))


def run(args: argparse.Namespace) -> int:
    from ..benchtool.sweep import parse_counts

    if not args.source and not args.caffe_layer and not args.dataset:
        raise ValueError("give a SOURCE to measure, --dataset MODULE:FACTORY, or --caffe-layer PARAM_STR")
    if args.source and args.dataset:
        raise ValueError(f"give a SOURCE ({args.source}) or --dataset {args.dataset}, not both")
    if args.plot:  # checked before anything runs or is written
        from ..outputs import check_file_output

        if not args.source and not args.dataset:
            raise ValueError("--plot needs a SOURCE or --dataset to measure")
        check_file_output(args.plot, flag="--plot", inputs=[args.source] if args.source else [])
    if args.repeats < 1 or args.consumer_threads < 0 or args.seconds <= 0:
        raise ValueError(f"--repeats {args.repeats}, --consumer-threads {args.consumer_threads}, --seconds "
                         f"{args.seconds}: need --repeats >= 1, --consumer-threads >= 0 and --seconds > 0")
    if args.compare == "torch":
        from ..benchtool.compare import have_torch

        if not have_torch():
            raise ValueError("--compare torch needs PyTorch: pip install 'feedstock[torch]'")
    counts = parse_counts(args.sweep_workers) if args.sweep_workers else None
    bar = progress_bar(_steps(args, counts), desc="bench", unit="step", disable=args.quiet)

    started: List[str] = []

    def step(name: str) -> None:  # a step starts: the one before it is done
        if started:
            bar.update(1)
        started.append(name)
        bar.set_description_str(f"bench: {name}")

    try:
        out = _measure(args, counts, step)
        bar.update(len(started) - bar.n)
    finally:
        bar.close()
    _print(args, out)
    return 0


def _measure(args: argparse.Namespace, counts: Optional[List[int]], step: Callable[[str], None]) -> dict:
    """The bench result (when a SOURCE is given) and the extra lines and fields of the options."""
    out: dict = {"result": None, "extra": [], "fields": {}}
    stream = None
    if args.source and not args.dataset:
        from ..stream import stream_from_args

        stream = stream_from_args(args, defaults={"shuffle": True, "seed": 0})
    if stream is not None and stream.engine == "ray":  # the two engines on this stream, instead of the local sweep
        from ..engines.ray_bench import bench_stream

        step("ray engine vs local Loader")
        out["extra"] += bench_stream(stream, args.phase, workers=max(counts or [2]), seconds=args.seconds)
        out["fields"]["ray_engine"] = list(out["extra"])
    elif args.source or args.dataset:
        from ..benchtool import Subject, run_bench

        if args.dataset:  # the user's own Python dataset (benchtool.user_dataset)
            from ..benchtool.user_dataset import subject_of

            subject = subject_of(args.dataset, batch_size=args.batch_size, seed=args.seed, shuffle=args.shuffle)
        else:
            assert stream is not None  # built above: a SOURCE and no --dataset
            subject = Subject.of_stream(stream, args.phase)
        result = run_bench(subject, counts=counts, seconds=args.seconds, compare=args.compare, step=step,
                           repeats=args.repeats, consumer_threads=args.consumer_threads)
        out["result"] = result
        from ..loaders.jpeg import choose, describe  # issue 22: the decoder chosen by measurement

        result.extra.append(describe())
        out["fields"]["jpeg_decoder"] = {"name": choose().name, "mp_per_s_per_core": round(choose().mps, 1)}
        if args.device:
            from ..benchtool.device_feed import measure_device

            step("device feed")
            lines = measure_device(subject.make_loader, max(result.verdict.workers, 1), seconds=args.seconds,
                                   step_s=args.step_ms / 1e3)
            result.extra.extend(lines)
    if args.caffe_layer:
        from ..benchtool.layer_time import time_layer

        step("Caffe DataLayer.forward")
        timing = time_layer(args.caffe_layer, steps=args.steps, step_s=args.step_ms / 1e3)
        out["extra"] += timing.lines()
        out["fields"]["caffe_layer"] = timing.to_dict()
    return out


def _print(args: argparse.Namespace, out: dict) -> None:
    from ..benchtool import plot, table

    result = out["result"]
    if args.json:
        doc = result.to_dict() if result is not None else {}
        doc.update(out["fields"])
        json.dump(doc, sys.stdout, indent=1, default=str)
        print()
    else:
        if result is not None:
            print(table(result))
        if out["extra"]:
            print("\n".join(([""] if result is not None else []) + out["extra"]))
    if args.plot:
        if result is None:
            raise ValueError("--plot needs a SOURCE or --dataset to measure")
        from ..outputs import atomic_file

        with atomic_file(args.plot) as tmp:
            plot(result, tmp)
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
