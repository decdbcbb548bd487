"""``feedstock predict``: run a saved snapshot on new data; Otto submissions, per-record predictions, scores."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from ..trainer.predict import Predictor

DESCRIPTION = """\
Run a snapshot written by `feedstock train` on new data, without training. The
snapshot fixes the model, its input conversion, the class names and the stream
settings (TEST phase: centre crop, no occlusion; a segmentation snapshot never
mirrors, a classifier's --mirror flips in TEST as Caffe's does), so there are no
flags for them. DATA is a CSV table, an LMDB, an HDF5 file or an image folder.

  feedstock predict train_out/otto_mlp_iter_6000.npz test.csv --out submission.csv
  feedstock predict train_out/lenet_iter_10000.npz test_lmdb --out predictions.csv

A CSV with an id column gives Kaggle Otto's layout: `id,Class_1,...,Class_9`, one
probability per class in the training file's order, rows summing to 1. Other data
gives one row per record: `key,predicted,<class>...`. When DATA has labels,
accuracy and multi-class log-loss are printed and written to OUT's .metrics.json,
and the confusion matrix to OUT's _confusion.png.

Data without labels (a CSV without its label column, an LMDB built with
--no-labels, an HDF5 file without `label`) gets predictions only, and a line
saying so: no accuracy, loss or confusion matrix. A CSV's feature columns are
matched to the training file's by name (any order); a missing or extra feature
column is an error naming it. The snapshot carries the mean image and class
names by value: the training data and mean file need not exist any more.

A segmentation snapshot (fcn_small) reads DATA as image + mask pairs: an images
folder (with --masks, the masks folder, to score), a pairs list file or an image
LMDB (with --masks the label LMDB); it writes one palette PNG mask per image, at
the image's own size, named by the image path below the images' folder or by the
record key (sanitised: always inside OUT), into the folder OUT (without its
suffix), and when masks are given OUT/metrics.json (pixel accuracy, mean and
per-class IoU) and OUT/confusion.png; OUT/sheet.png shows the first images as
truth | prediction | prediction over the image. That folder is built beside OUT
and swapped in at the end; an existing one is replaced only when it is an earlier
predict output (its .feedstock-output marker) or with --force. OUT is never the
current folder, DATA, or a folder holding them.

  feedstock predict fcn_out/fcn_small_iter_600.npz test/images --masks test/masks --out fcn_masks
"""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser("predict", help="run a trained snapshot on new data (Otto submission, predictions)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("snapshot", help="npz snapshot written by `feedstock train`")
    p.add_argument("data", help="CSV, LMDB, HDF5 or image folder to predict")
    p.add_argument("--out", default="predictions.csv", help="output CSV; for a segmentation snapshot, the "
                   "folder of predicted masks (OUT without its suffix) [%(default)s]")
    p.add_argument("--batch-size", type=int, default=256, help="[%(default)s]")
    p.add_argument("--workers", type=int, default=0, help="loader worker processes [%(default)s]")
    p.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto",
                   help="array library: cupy on a GPU, numpy on the CPU (auto: cupy when a GPU is usable)")
    p.add_argument("--masks", default="", help="segmentation: the masks of DATA's images (folder or label LMDB)")
    p.add_argument("--force", action="store_true", help="segmentation: replace OUT even when it is not a predict output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size <= 0 or args.workers < 0:
        raise ValueError(f"--batch-size {args.batch_size} must be positive and --workers {args.workers} >= 0")
    for path in predict_files(args.snapshot, args.data, Path(args.out), batch_size=args.batch_size,
                              workers=args.workers, backend=args.backend, echo=print, masks=args.masks,
                              force=args.force):
        print(f"wrote {path}")
    return 0


def predict_files(snapshot: str, data: str, out: Path, *, batch_size: int = 256, workers: int = 0,
                  backend: str = "auto", echo: Optional[Callable[[str], object]] = None, masks: str = "", force: bool = False) -> list:
    """Predict ``data`` with ``snapshot`` and write OUT (and, when labelled, the metrics and confusion files);
    every output is checked before anything is written (:mod:`feedstock.outputs`)."""
    from ..outputs import check_file_output, check_output
    from ..trainer.predict import Predictor

    inputs = [snapshot, data, masks]
    check_output(out, inputs=inputs)
    predictor = Predictor(snapshot, backend=backend)
    if predictor.net.task == "segmentation":  # palette PNG masks, scored when masks are given
        return _predict_masks(predictor, data, out.with_suffix(""), masks=masks, batch_size=batch_size,
                              workers=workers, echo=echo, force=force, inputs=inputs)
    if masks:
        raise ValueError(f"--masks {masks!r} applies to segmentation snapshots; {snapshot} is a classifier")
    for path in (out, _metrics_path(out), _confusion_path(out)):
        check_file_output(path, flag="--out", inputs=inputs)
    return _predict_table(predictor, snapshot, data, out, batch_size=batch_size, workers=workers, echo=echo)


def _metrics_path(out: Path) -> Path:
    return out.with_name(out.stem + ".metrics.json")


def _confusion_path(out: Path) -> Path:
    return out.with_name(out.stem + "_confusion.png")


def _predict_masks(predictor: Predictor, data: str, out: Path, *, force: bool, inputs: list, **kwargs: Any) -> list:
    """Segmentation: the mask folder, built beside OUT and swapped in on success."""
    from ..outputs import StagedDir
    from ..trainer.seg.predict import predict_masks

    stage = StagedDir(out, "predict", force=force, inputs=inputs)
    with stage:
        files = predict_masks(predictor, data, stage.path, **kwargs)
    return [stage.final(f) for f in files]


def _predict_table(predictor: Predictor, snapshot: str, data: str, out: Path, *, batch_size: int, workers: int,
                   echo: Optional[Callable[[str], object]]) -> list:
    """Classification: one CSV row per record; metrics and the confusion matrix only for labelled data."""
    from ..trainer.predict import write_class_probabilities, write_record_predictions, write_scores

    pred = predictor.run(data, batch_size=batch_size, workers=workers)
    names = predictor.class_names
    if pred.unlabelled is not None and echo is not None:
        echo(f"{data}: no labels ({pred.unlabelled}): predictions only, no accuracy, loss or confusion matrix")
    if pred.ids is not None:
        files = [write_class_probabilities(out, pred.probs, ids=pred.ids, class_names=names)]
    else:
        files = [write_record_predictions(out, pred, names)]
    if pred.metrics and pred.confusion is not None:
        files += write_scores(pred.metrics, pred.confusion, _metrics_path(out), _confusion_path(out),
                              fields={"data": str(data), "snapshot": str(snapshot)}, count="records",
                              n=len(pred.keys), class_names=names, echo=echo)
    return files
