"""``feedstock train``: train LeNet or the Otto MLP from LMDB/CSV (or the bundled sample), report and plot."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Optional, Tuple

from .progress import add_quiet_flag, progress_bar

log = logging.getLogger(__name__)

DESCRIPTION = """\
Train a model with feedstock feeding it and print accuracy, throughput and the
fraction of step time spent waiting for data; write loss/accuracy curves and
first-layer filters (PNG) and a final npz snapshot to --out.

  feedstock train --model lenet --train train_lmdb --val test_lmdb --iters 2000
  feedstock train --model lenet                    # bundled Fashion-MNIST sample
  feedstock train --model lenet --full             # full set (apt-get install dataset-fashion-mnist)
  feedstock train --model otto_mlp --train train.csv --holdout 0.1 --test test.csv --predict out.csv
  feedstock train --model lenet --remote tcp://127.0.0.1:5555 --val test_lmdb   # fed by `feedstock serve
      train_lmdb --shuffle --drop-last` on CPU hosts (its batch size must match --batch-size)

The solver is Caffe's SGD (lr policies fixed/step/multistep/inv/exp/poly/sigmoid,
momentum, weight decay); --solver reads a YAML file of SolverParameter fields
(base_lr, lr_policy, gamma, power, stepsize, stepvalue, momentum, weight_decay,
max_iter, test_interval, test_iter, snapshot, ...). Defaults: the model's own
(LeNet: Caffe's lenet_solver.prototxt).
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train LeNet / the Otto MLP with feedstock feeding it",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=("lenet", "otto_mlp"))
    p.add_argument("--train", help="Caffe LMDB directory or CSV table (lenet default: bundled sample)")
    p.add_argument("--remote", nargs="+", metavar="ENDPOINT", help="train on `feedstock serve` feeds instead of --train")
    p.add_argument("--curve-server-key", help="with --remote over CURVE: the server's public key file")
    p.add_argument("--curve-keys", help="with --remote over CURVE: this client's secret key file")
    p.add_argument("--val", help="validation LMDB/CSV for test passes and the final accuracy")
    p.add_argument("--holdout", type=float, default=0.0, help="hold out this fraction of --train as validation")
    p.add_argument("--full", action="store_true", help="lenet: the full Fashion-MNIST of the Debian package")
    p.add_argument("--solver", help="YAML file of Caffe solver fields")
    p.add_argument("--iters", type=int, help="max_iter (overrides the solver)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="loader worker processes (0: read in-process)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto")
    p.add_argument("--resume", help="npz snapshot to continue from")
    p.add_argument("--out", default="train_out", help="folder for plots and snapshots")
    p.add_argument("--test", help="otto_mlp: table to predict (e.g. Otto's test.csv)")
    p.add_argument("--predict", help="write class probabilities of --test here as id,Class_1..Class_9")
    add_quiet_flag(p)
    p.set_defaults(func=run)


def _sources(args: argparse.Namespace) -> Tuple[Any, Any]:
    from ..trainer.datasets import load_fashion_mnist
    from ..loaders import open_source
    from ..trainer.feeding import holdout_split

    if args.remote:
        from ..remote import RemoteLoader

        if args.train or args.full or args.holdout:
            raise ValueError("--remote replaces --train/--full/--holdout: the servers hold the training data")
        return (RemoteLoader(args.remote, curve_server_key=args.curve_server_key, curve_keys=args.curve_keys),
                open_source(args.val) if args.val else None)
    if args.train is None:
        if args.model != "lenet":
            raise ValueError("--train is required for --model otto_mlp")
        train, val = load_fashion_mnist(full=args.full)
        return train, (val if args.val is None else open_source(args.val))
    train = open_source(args.train)
    val = open_source(args.val) if args.val else None
    if args.holdout:
        if val is not None:
            raise ValueError("give either --val or --holdout, not both")
        train, val = holdout_split(train, args.holdout, seed=args.seed)
    return train, val


def _check(args: argparse.Namespace) -> None:
    if args.predict and not args.test:
        raise ValueError("--predict needs --test (the table to predict)")
    if args.full and args.train:
        raise ValueError("--full picks the Debian Fashion-MNIST; do not combine it with --train")
    if args.iters is not None and args.iters <= 0:
        raise ValueError(f"--iters {args.iters} must be positive")


def run(args: argparse.Namespace) -> int:
    from ..trainer.loop import resolve_solver, train
    from ..trainer.models import get_model

    _check(args)
    model = get_model(args.model)
    train_src, val_src = _sources(args)
    cfg = resolve_solver(args.solver, model)
    total = args.iters if args.iters is not None else cfg.max_iter
    bar = progress_bar(total, desc=f"train {args.model}", unit="it", disable=args.quiet)
    try:
        report = train(model, train_src, val_src, cfg, args.out, batch_size=args.batch_size,
                       workers=args.workers, seed=args.seed, iters=args.iters, backend=args.backend,
                       resume=args.resume, progress=bar.update)
    finally:
        bar.close()
    print(report.summary())
    for path in report.files:
        print(f"wrote {path}")
    if args.test:
        print(f"wrote {_predict(args, model, report, train_src)}")
    return 0


def _predict(args: argparse.Namespace, model: Any, report: Any, train_src: Any) -> Path:
    from ..loaders import open_source
    from ..trainer.predict import predict_proba, write_class_probabilities

    test = open_source(args.test)
    probs = predict_proba(report.net, model, test, batch_size=max(args.batch_size, 256))
    names = _class_names(train_src)
    out = Path(args.predict or Path(args.out) / "predictions.csv")
    return write_class_probabilities(out, probs, ids=getattr(test, "ids", None), class_names=names)


def _class_names(source: Any) -> Optional[list]:
    """CsvTable's label names (Class_1..Class_9 for Otto), through a holdout Subset too."""
    base = getattr(source, "source", source)
    return getattr(base, "classes", None)
