"""``feedstock train``: train LeNet, the Otto MLP or the small FCN from any stream (with its augmentations), report and plot."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Tuple

from .progress import add_quiet_flag, progress_bar

if TYPE_CHECKING:
    from ..stream import Stream
    from ..trainer.interrupt import StopSignals
    from ..trainer.modeldef import ModelDef
    from ..trainer.nn.solver import SolverConfig
    from ..trainer.report import TrainReport

log = logging.getLogger(__name__)

DESCRIPTION = """\
Train a model with feedstock feeding it and print accuracy (and multi-class
log-loss), throughput and the fraction of step time spent waiting for data; write
loss/accuracy curves, first-layer filters, the network diagram, weight histograms
(PNG), <model>_metrics.json and npz snapshots (which `feedstock predict` runs) to --out.

  feedstock train --model lenet --train train_lmdb --val test_lmdb --iters 2000
  feedstock train --model lenet                    # bundled Fashion-MNIST sample
  feedstock train --model lenet --full             # full set (apt-get install dataset-fashion-mnist)
  feedstock train --model otto_mlp --train train.csv --holdout 0.1 --test test.csv --predict out.csv
  # DIGITS' LeNet recipe: grey digits, mean image subtracted, scaled to [-1, 1], occlusion in TRAIN
  feedstock train --model lenet --train train_lmdb --val val_lmdb --gray --mean-file mean.binaryproto \\
      --to-range=-1,1 --occlude
  # fed by `feedstock serve train_lmdb --shuffle --drop-last` on CPU hosts (same --batch-size)
  feedstock train --model lenet --remote tcp://127.0.0.1:5555 --val test_lmdb
  # segmentation: a small FCN on image + mask pairs (scores: pixel accuracy, per-class and mean IoU)
  feedstock train --model fcn_small --train images/ --masks masks/ --source-type pairs --crop-size 64 \\
      --mirror --val val/images --val-masks val/masks
  feedstock train --model lenet --iters 2000 --test-interval 250 --snapshot-interval 1000

The stream flags are the ones `feedstock serve` takes: --train/--val are read with
them, training in the TRAIN phase (random crop, mirror, occlusion), validation in
the TEST phase (centre crop, no occlusion; --mirror flips in TEST too, as Caffe's
transformer does, except for segmentation pairs). Training defaults: --shuffle,
--drop-last, --seed 0. The model scales its raw input itself (lenet: x/256,
otto_mlp: log(1+x)) unless a value flag (--scale, --mean-file, --mean-value,
--to-range) sets the values.

--out is the run's folder: created when missing, written in place when it is an
earlier train output (its .feedstock-output marker; --resume reads snapshots
there), refused otherwise unless --force. A failed run removes what it added.
Ctrl-C (SIGINT) or SIGTERM stops after the current step with a snapshot at that
iteration, printed with the --resume command that continues it exactly; a second
Ctrl-C stops at once.

The solver is Caffe's SGD (lr policies fixed/step/multistep/inv/exp/poly/sigmoid,
momentum, weight decay); --solver reads a YAML file of SolverParameter fields
(base_lr, lr_policy, gamma, power, stepsize, stepvalue, momentum, weight_decay,
max_iter, test_interval, test_iter, snapshot, ...). Defaults: the model's own
(LeNet: Caffe's lenet_solver.prototxt).
"""

TRAIN_DEFAULTS = {"shuffle": True, "drop_last": True, "seed": 0}
# Stream keys that only say how to load (no transform): the bundled arrays honour these.
LOADER_KEYS = ("batch_size", "shuffle", "seed", "drop_last", "workers", "prefetch", "on_error", "max_bad_fraction",
               "timeout", "start_method", "shard", "rank", "world_size")


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from ..stream import add_stream_arguments
    from ..trainer.models import MODELS

    p = subparsers.add_parser("train", help="train LeNet, the Otto MLP or fcn_small with feedstock feeding it",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=sorted(MODELS),
                   help="lenet (images), otto_mlp (feature tables), fcn_small (segmentation pairs)")
    p.add_argument("--train", help="training data: LMDB, CSV, HDF5, list file or image folder "
                                   "(lenet default: the bundled sample)")
    p.add_argument("--remote", nargs="+", metavar="ENDPOINT", help="train on `feedstock serve` feeds instead of --train")
    p.add_argument("--curve-server-key", help="with --remote over CURVE: the server's public key file")
    p.add_argument("--curve-keys", help="with --remote over CURVE: this client's secret key file")
    p.add_argument("--val", help="validation data for test passes and the final accuracy (TEST phase)")
    p.add_argument("--val-masks", default="", help="pairs: the masks of --val's images (folder or label LMDB)")
    p.add_argument("--holdout", type=float, default=0.0, help="hold out this fraction of --train as validation")
    p.add_argument("--full", action="store_true", help="lenet: the full Fashion-MNIST of the Debian package")
    p.add_argument("--solver", help="YAML file of Caffe solver fields")
    p.add_argument("--iters", type=int, help="max_iter (overrides the solver)")
    p.add_argument("--test-interval", type=int, metavar="N",
                   help="a validation pass every N iterations, 0 for none (overrides the solver's test_interval)")
    p.add_argument("--snapshot-interval", type=int, metavar="N", help="an npz snapshot every N iterations, "
                   "0 for the final one only (overrides the solver's snapshot)")
    p.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto",
                   help="array library: cupy on a GPU, numpy on the CPU (auto: cupy when a GPU is usable)")
    p.add_argument("--resume", help="npz snapshot to continue from")
    p.add_argument("--out", default="train_out", help="folder for plots and snapshots")
    p.add_argument("--force", action="store_true", help="write into --out even when it is not a train output")
    p.add_argument("--test", help="data to predict after training (e.g. Otto's test.csv)")
    p.add_argument("--predict", help="write --test's predictions here (Otto: id,Class_1..Class_9)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="write no PNG pictures")
    p.add_argument("--num-classes", type=int, help="the model's class count (default: the data's: its class "
                   "names, a label LMDB's labels.txt, else the largest label + 1)")
    add_stream_arguments(p, source=False)
    add_quiet_flag(p)
    p.set_defaults(func=run)


def _inputs(args: argparse.Namespace) -> Tuple[Any, Any, dict]:
    """(training data, validation data, train() keywords) from the flags."""
    from ..stream import stream_from_args
    from ..trainer.inputs import sets_values

    stream = stream_from_args(args, source=args.train, defaults=TRAIN_DEFAULTS)
    if args.remote:
        from ..remote import RemoteLoader

        if args.train or args.full or args.holdout:
            raise ValueError("--remote replaces --train/--full/--holdout: the servers hold the training data")
        val = stream.replace(source=args.val).build_loader("test", shuffle=False, drop_last=False,
                                                           caffe_layout=True) if args.val else None
        try:
            remote = RemoteLoader(args.remote, curve_server_key=args.curve_server_key, curve_keys=args.curve_keys)
        except BaseException:
            if val is not None:
                val.close()
            raise
        # train() checks the feed (full batches of our size); the servers hold the transform settings,
        # the model scales unless these flags set the values
        return remote, val, {"batch_size": stream.batch_size, "seed": stream.seed,
                             "model_scaling": not sets_values(stream)}
    if args.train is None:
        return _bundled(args, stream)
    if args.val and stream.kind() == "pairs":  # --val's own masks: --train's --masks would match its stems
        return stream, stream.replace(source=args.val, masks=args.val_masks), {"holdout": args.holdout}
    if args.val_masks:
        raise ValueError("--val-masks applies to a pairs --val (--source-type pairs)")
    return stream, args.val, {"holdout": args.holdout}


def _bundled(args: argparse.Namespace, stream: Stream) -> Tuple[Any, Any, dict]:
    """The Fashion-MNIST arrays, read without transforms (build an LMDB of them to augment)."""
    from ..trainer.datasets import CLASS_NAMES, load_fashion_mnist

    if args.model != "lenet":
        raise ValueError(f"--train is required for --model {args.model}")
    settings = sorted(k for k in stream.changed() if k not in LOADER_KEYS)
    if settings:
        raise ValueError(f"stream settings {settings} need --train (the bundled sample is read as arrays "
                         "without transforms; build an LMDB of it with build-lmdb)")
    train, val = load_fashion_mnist(full=args.full)
    kw = {"batch_size": stream.batch_size, "seed": stream.seed, "workers": stream.workers, "holdout": args.holdout,
          "class_names": list(CLASS_NAMES)}
    return train, (None if args.holdout else val if args.val is None else args.val), kw


def _check(args: argparse.Namespace) -> None:
    if args.predict and not args.test:
        raise ValueError("--predict needs --test (the data to predict)")
    if args.full and args.train:
        raise ValueError("--full picks the Debian Fashion-MNIST; do not combine it with --train")
    if args.iters is not None and args.iters <= 0:
        raise ValueError(f"--iters {args.iters} must be positive")
    if args.holdout and args.val:
        raise ValueError("give either --val or --holdout, not both")
    for flag, value in (("--test-interval", args.test_interval), ("--snapshot-interval", args.snapshot_interval)):
        if value is not None and value < 0:
            raise ValueError(f"{flag} {value} must be >= 0 (0: off)")
    if args.predict:
        from ..outputs import check_file_output

        check_file_output(args.predict, flag="--predict", inputs=_input_paths(args))


def _input_paths(args: argparse.Namespace) -> list:
    """Every path the run reads: no output may be, or hold, one of them."""
    names = ("train", "val", "val_masks", "test", "masks", "mean_file", "classes", "solver", "root_folder")
    return [getattr(args, name, None) for name in names]


def with_intervals(cfg: "SolverConfig", args: argparse.Namespace) -> "SolverConfig":
    """The solver with --test-interval / --snapshot-interval applied (None: the solver's own)."""
    changes = {k: v for k, v in (("test_interval", args.test_interval), ("snapshot", args.snapshot_interval))
               if v is not None}
    return cfg.replace(**changes) if changes else cfg


def run(args: argparse.Namespace) -> int:
    from ..outputs import UpdateDir
    from ..trainer.interrupt import StopSignals
    from ..trainer.models import get_model

    _check(args)
    model = get_model(args.model)
    out = UpdateDir(args.out, "train", force=args.force, inputs=_input_paths(args))  # checks; writes nothing
    train_data, val_data, kw = _inputs(args)
    with StopSignals() as stop, out:  # a failure removes what the run added to --out
        report = _train(args, model, train_data, val_data, kw, stop)
        print(report.summary())
        for path in report.files:
            print(f"wrote {path}")
        if stop():
            return _stopped(args, report, stop)
        if args.test:
            from .predict import predict_files

            snapshot = next(p for p in reversed(report.files) if p.endswith(".npz"))
            target = Path(args.predict or Path(args.out) / "predictions.csv")
            for path in predict_files(snapshot, args.test, target, backend=args.backend, echo=print):
                print(f"wrote {path}")
    return 0


def _train(args: argparse.Namespace, model: ModelDef, train_data: Any, val_data: Any, kw: dict,
           stop: StopSignals) -> TrainReport:
    from ..trainer.feeding import is_loader
    from ..trainer.loop import resolve_solver, train

    try:
        cfg = with_intervals(resolve_solver(args.solver, model), args)
        total = args.iters if args.iters is not None else cfg.max_iter
        bar = progress_bar(total, desc=f"train {args.model}", unit="it", disable=args.quiet)
        try:
            # the model's name, not its ModelDef: a bundled model is sized to the data's classes
            return train(args.model, train_data, val_data, cfg, args.out, iters=args.iters, backend=args.backend,
                         resume=args.resume, progress=bar.update, plots=args.plots, stop=stop,
                         num_classes=args.num_classes, **kw)
        finally:
            bar.close()
    except BaseException:
        for data in (train_data, val_data):  # --remote's loaders (train() closes those it took; twice is harmless)
            if is_loader(data):
                data.close()
        raise


def _stopped(args: argparse.Namespace, report: TrainReport, stop: StopSignals) -> int:
    """Say where the run's state went and how to continue; exit as the signal asks (130 for SIGINT)."""
    snapshot = next(p for p in reversed(report.files) if p.endswith(".npz"))
    print(f"stopped by {stop.name}: snapshot {snapshot}; continue with: feedstock train --model {args.model} "
          f"... --out {args.out} --resume {snapshot}" + (" (--test skipped)" if args.test else ""))
    assert stop.received is not None  # run() calls this only once stop() said True
    return 128 + int(stop.received)
