"""``feedstock demo``: the main job on bundled data, end to end.

Converts the bundled Fashion-MNIST sample to Caffe LMDBs (as Caffe's
convert_mnist_data does: raw 1x28x28 Datums, keys ``%08d``), reads them back
through ``CaffeLmdb``, then trains LeNet fed by the multi-process Loader and
prints accuracy, throughput and the fraction of time the trainer waited for data;
the output folder gets the curves, first-layer filters, the network diagram
(``lenet_net.png``), weight histograms, metrics JSON, the final snapshot, a grid
of training samples (``samples.png``) and the test set's predictions with their
confusion matrix (``test_predictions_confusion.png``).

The output is built beside ``--out`` (``OUT.partial``) and swapped in when the
run succeeds; an existing ``--out`` is replaced only when it is an earlier demo
output (its ``.feedstock-output`` marker) or with ``--force``.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Tuple

import numpy as np

from ..caffe_pb import array_to_datum
from ..loaders import CaffeLmdb
from ..writers import LmdbWriter
from .progress import Bar

if TYPE_CHECKING:
    from ..trainer.report import TrainReport


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="convert the bundled Fashion-MNIST sample to LMDB and train LeNet on it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo-out", help="output folder (an earlier demo output is replaced) [%(default)s]")
    p.add_argument("--force", action="store_true", help="replace --out even when it is not a demo output")
    p.add_argument("--iters", type=int, default=400, help="LeNet training iterations [%(default)s]")
    p.add_argument("--batch-size", type=int, default=64, help="[%(default)s]")
    p.add_argument("--workers", type=int, default=2, help="loader worker processes [%(default)s]")
    p.add_argument("--seed", type=int, default=0, help="[%(default)s]")
    p.add_argument("--full", action="store_true",
                   help="use the full Fashion-MNIST from the dataset-fashion-mnist Debian package")
    p.set_defaults(func=run)


def write_lmdb(path: Path, images: np.ndarray, labels: np.ndarray, desc: str) -> None:
    """Raw uint8 Datums with MNIST converter keys (``%08d``), committed every 1000, and labels.txt
    (the class names, as build-lmdb writes them: snapshots and predictions then name the classes)."""
    from ..trainer.datasets import CLASS_NAMES
    from ..writers.build.output import write_labels

    with LmdbWriter(path, overwrite=True) as w:
        for i in Bar(range(len(labels)), desc=desc, unit="img", leave=False):
            w.put_datum(i, None, array_to_datum(images[i], int(labels[i])))
    write_labels(str(path), list(CLASS_NAMES))


def summarise(path: Path) -> str:
    src = CaffeLmdb(path)
    labels = np.array([int(src[i]["label"]) for i in range(len(src))])
    first = src[0]["data"]
    hist = np.bincount(labels, minlength=10)
    return (f"{path.name}: {len(src)} records, data {first.dtype} {tuple(first.shape)}, "
            f"keys {src.raw_key(0).decode()}..{src.raw_key(len(src) - 1).decode()}, labels per class {hist.tolist()}")


def check_args(args: argparse.Namespace) -> None:
    """Every flag checked before anything is written."""
    for name in ("iters", "batch_size"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)} must be positive")
    for name in ("workers", "seed"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} {getattr(args, name)} must be >= 0")


def run(args: argparse.Namespace) -> int:
    from ..loaders.caffe_lmdb import release_env
    from ..outputs import StagedDir

    check_args(args)
    stage = StagedDir(args.out, "demo", force=args.force)
    with stage:
        try:
            report, extra = _demo(args, Path(stage.path))
        finally:
            for name in ("train_lmdb", "test_lmdb"):  # the swap renames them: no env may stay open on the old path
                release_env(os.path.join(stage.path, name))
    print(report.summary())
    for f in report.files + extra:
        print(f"    wrote {stage.final(f)}")
    return 0


def _demo(args: argparse.Namespace, out: Path) -> Tuple[TrainReport, list]:
    from ..trainer import get_model, load_fashion_mnist, train

    train_split, test_split = load_fashion_mnist(full=args.full)
    print(f"1/3 converting {len(train_split)} + {len(test_split)} Fashion-MNIST images to Caffe LMDBs in {args.out}/")
    t0 = time.perf_counter()
    write_lmdb(out / "train_lmdb", train_split.images, train_split.labels, "train_lmdb")
    write_lmdb(out / "test_lmdb", test_split.images, test_split.labels, "test_lmdb")
    print(f"    done in {time.perf_counter() - t0:.1f} s")
    print("2/3 reading them back through feedstock.loaders.CaffeLmdb")
    for name in ("train_lmdb", "test_lmdb"):
        print("    " + summarise(out / name))
    print(f"3/3 training LeNet for {args.iters} iterations, fed by {args.workers} loader workers")
    # Caffe's LeNet solver, tested every 100 iterations so the demo's curves have points.
    solver = get_model("lenet").solver.replace(test_interval=100)
    with Bar(total=args.iters, desc="lenet", unit="it") as bar:  # no monitor thread: workers fork
        report = train("lenet", CaffeLmdb(out / "train_lmdb"), CaffeLmdb(out / "test_lmdb"), solver,
                       out_dir=out, batch_size=args.batch_size, workers=args.workers,
                       seed=args.seed, iters=args.iters, progress=bar.update)
    return report, pictures(out, report.files)


def pictures(out: Path, files: list) -> list:
    """A grid of training samples with their class names, and the test set's confusion matrix (the final
    snapshot run by `feedstock predict`'s code on test_lmdb)."""
    from ..trainer.datasets import CLASS_NAMES
    from .contact_sheet import sample_grid
    from .predict import predict_files

    grid = sample_grid(CaffeLmdb(out / "train_lmdb"), out / "samples.png", class_names=list(CLASS_NAMES))
    snapshot = next(str(p) for p in reversed(files) if str(p).endswith(".npz"))
    return [grid] + [str(p) for p in predict_files(snapshot, str(out / "test_lmdb"), out / "test_predictions.csv")]
