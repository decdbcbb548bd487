"""Apply a trained snapshot to new data: class probabilities, Otto submissions, per-record predictions, scores.

The snapshot's deploy record (see :mod:`.deploy`) fixes the model, the input
conversion, the class names and the stream whose TEST phase reads the data
(centre crop, no mirror, no occlusion), so predicting takes no training flags.
It carries them by value: the mean image is materialised for the Loader's
construction only, a CSV's feature columns are matched by name, and data
without labels (a ``--no-labels`` build, a CSV without its label column) gets
predictions only, never metrics.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import tempfile
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from .. import protocols
from ..backend import Backend, get_backend
from ..device import DeviceFeeder
from ..loaders import CaffeLmdb, CsvTable
from ..loaders.base import Source, deliver
from ..outputs import atomic_file
from ..pipeline.loader import Loader
from ..protocols import Indices
from ..stream import TEST, Stream, stream_from_mapping
from .checks import BatchCheck
from .deploy import Conversion, Deployment, load_deployment
from .feeding import LoaderBatches
from .metrics import softmax
from .models import ModelDef
from .nn.net import Net

PathLike = Union[str, Path]


@dataclass
class Predictions:
    """Per record, in data order: probabilities (N, K), keys, CSV ids; metrics and confusion when labelled."""

    probs: np.ndarray  # (N, K)
    keys: List[str]
    ids: Optional[np.ndarray] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    confusion: Optional[np.ndarray] = None
    unlabelled: Optional[str] = None  # why the data has no labels (then no metrics): a sentence


class Predictor:
    """A snapshot's net, ready to predict any data its stream can read."""

    def __init__(self, snapshot: PathLike, *, backend: Union[str, Backend] = "auto") -> None:
        self.deploy, params = load_deployment(snapshot)
        self.mdef: ModelDef = self.deploy.model_def()
        be = backend if isinstance(backend, Backend) else get_backend(backend)
        self.net: Net = self.mdef.build(backend=be)
        self.net.load_state_dict(params)

    @property
    def class_names(self) -> List[str]:
        names = self.deploy.class_names
        return list(names) if names else [f"Class_{i + 1}" for i in range(self.net.num_classes)]

    def loader(self, data: PathLike, *, batch_size: int = 256, workers: int = 0) -> Loader:
        """The TEST-phase Loader of the snapshot's stream on ``data``, in order, every record."""
        with deploy_stream(self.deploy, os.fspath(data)) as stream:
            source = predict_source(stream, self.deploy.class_names, self.deploy.features)
            return stream.build_loader(TEST, source=source, batch_size=batch_size, workers=workers, shuffle=False,
                                       seed=0, drop_last=False)

    def run(self, data: PathLike, *, batch_size: int = 256, workers: int = 0) -> Predictions:
        loader = self.loader(data, batch_size=batch_size, workers=workers)
        why = unlabelled(loader.source, os.fspath(data))
        labelled = why is None
        check = BatchCheck(self.net, what=os.fspath(data), labels=labelled)
        meter = self.net.meter() if labelled else None
        probs, ids = [], []
        batches = LoaderBatches(loader)
        with DeviceFeeder(self.net.backend, dtype=self.net.dtype, **_conversion(self.deploy)) as feeder, \
                closing(batches):
            for batch in feeder.feed(check.host(batches.epoch(0)), slots=batches.slot_arrays):
                scores = self.net.forward(check.data(batch), train=False)
                # float64 (as the meter computes it): written rows sum to 1 at print precision
                probs.append(softmax(self.net.backend.to_numpy(scores)))
                if meter is not None:
                    meter.update(scores, self.net.loss_labels(batch["label"]))
                if "id" in batch:
                    ids.append(self.net.backend.to_numpy(batch["id"]))
        out = Predictions(np.concatenate(probs), record_keys(loader.source),
                          np.concatenate(ids).astype(np.int64) if ids else None, unlabelled=why)
        if meter is not None:
            out.metrics, out.confusion = meter.result(), meter.confusion
        return out


def _conversion(deploy: Deployment) -> Conversion:
    c = deploy.conversion
    return {"scale": float(c["scale"]), "mean": float(c["mean"]), "log1p": bool(c["log1p"])}


def _stream(deploy: Deployment, data: str) -> Stream:
    """The snapshot's stream on ``data`` (paths it stored are gone: values replace them, see deploy_stream)."""
    if deploy.stream is None:
        return Stream(source=data)
    stored = stream_from_mapping(dict(deploy.stream, classes=""), form="the snapshot's stream")
    return stored.replace(source=data, source_type="auto")


@contextlib.contextmanager
def deploy_stream(deploy: Deployment, data: str) -> Iterator[Stream]:
    """The snapshot's stream on ``data``; a mean image it carries is written to a temporary mean file
    for the transforms' construction (they read it once), removed when the block ends."""
    stream = _stream(deploy, data)
    if deploy.mean_image is None:
        yield stream
        return
    from ..caffe_pb import write_mean_file

    with tempfile.TemporaryDirectory(prefix="feedstock-mean-") as tmp:
        path = os.path.join(tmp, "mean.binaryproto")
        write_mean_file(path, np.asarray(deploy.mean_image, np.float32))
        yield stream.replace(mean_file=path, mean_value=())


class FeaturesByName(Source):
    """A CSV table with its feature columns put in the training order (matched by name, not position)."""

    def __init__(self, table: CsvTable, order: Sequence[int]) -> None:
        self.table, self.order = table, np.asarray(order, dtype=np.int64)
        self.columns = [table.columns[j] for j in self.order]

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        row = dict(self.table[i])
        row["data"] = row["data"][self.order]  # (F,) or Caffe's (F, 1, 1): features on the first axis
        return row

    def key(self, i: int) -> str:
        return self.table.key(i)

    def read_batch(self, indices: Indices, out: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
        rows = dict(self.table.read_batch(indices))
        rows["data"] = rows["data"][:, self.order]
        return deliver(rows, out)


def match_features(table: CsvTable, features: Optional[Sequence[str]]) -> Source:
    """``table`` with its columns in the order of the training ``features``; a missing or extra column
    is an error naming it (a column in another place is moved, never read as another feature)."""
    if features is None or list(table.columns) == list(features):
        return table
    have, want = set(table.columns), set(features)
    missing = [c for c in features if c not in have]
    if missing:
        raise ValueError(f"{table.path}: feature column {missing[0]!r} of the training data is missing "
                         f"({len(missing)} missing); the model reads its {len(features)} features by name")
    extra = [c for c in table.columns if c not in want]
    if extra:
        raise ValueError(f"{table.path}: column {extra[0]!r} is not a feature the model was trained on "
                         f"({len(extra)} such); remove it, or name it as the label column")
    return FeaturesByName(table, [table.columns.index(c) for c in features])


def predict_source(stream: Stream, class_names: Optional[Sequence[str]],
                   features: Optional[Sequence[str]] = None) -> Source:
    """The stream's Source on predict data, with labels when the data has them (a CSV's label
    column, an HDF5 ``label`` dataset) and none otherwise (Otto's test.csv); a CSV's feature
    columns matched by name to the training ``features``. Opened by the stream's kind
    (:func:`feedstock.stream.kinds.source_of`), as training opens it."""
    kind = stream.kind()
    if kind == "csv":  # the training set's codes: a file without Class_1 must still map Class_3 to code 2
        table = stream.build_source(caffe_layout=True, class_names=class_names, labels="optional")
        return match_features(table, features) if isinstance(table, CsvTable) else table
    if kind == "hdf5":
        return stream.build_source(labels="optional")
    if class_names and kind in ("folder", "list", "lmdb"):
        from .inputs import val_source

        try:  # the training codes: val/ without dog/ keeps emu at 2
            return val_source(stream, list(class_names))
        except ValueError as e:  # folders named otherwise (c0..c9): their own order, said out loud
            logging.getLogger(__name__).warning("%s; reading its labels as they are", e)
    return stream.build_source(caffe_layout=True)


def unlabelled(source: protocols.Source, data: str) -> Optional[str]:
    """Why ``data`` has no labels to score (None when it has them): a CSV without its label column, an
    HDF5 file without ``label``, an LMDB whose build says ``--no-labels`` (its Datums say label 0)."""
    if isinstance(source, FeaturesByName):
        source = source.table
    if isinstance(source, CsvTable):
        return None if source.labels is not None else "the CSV has no label column"
    if isinstance(source, CaffeLmdb) and built_without_labels(source.path):
        return "the LMDB was built with --no-labels (every Datum says label 0)"
    if "label" not in source.spec():
        return "the data has no label field"
    return None


def built_without_labels(path: str) -> bool:
    """The build.json of the LMDB (or of the build holding it as train_lmdb/val_lmdb) says no_labels."""
    for folder in (path, os.path.dirname(os.path.abspath(path))):
        manifest = os.path.join(folder, "build.json")
        if os.path.isfile(manifest):
            try:
                with open(manifest, encoding="utf-8") as f:
                    return bool(json.load(f).get("plan", {}).get("options", {}).get("no_labels"))
            except (OSError, ValueError):
                return False
    return False


def record_keys(source: protocols.Source) -> List[str]:
    """What names each record in a predictions file: an LMDB's key, else the source's key (path, file:row)."""
    if isinstance(source, CaffeLmdb):
        return [source.raw_key(i).decode("utf-8", "backslashreplace") for i in range(len(source))]
    return [source.key(i) for i in range(len(source))]


def write_class_probabilities(path: PathLike, probs: np.ndarray, *, ids: Union[Sequence[object], np.ndarray, None] = None,
                              class_names: Optional[Sequence[str]] = None) -> Path:
    """CSV ``id,Class_1,...,Class_K`` (Kaggle Otto's submission layout); ids default to 1..N."""
    probs = np.asarray(probs)
    n, k = probs.shape
    id_col = np.arange(1, n + 1) if ids is None else np.asarray(ids)
    names = list(class_names) if class_names is not None else [f"Class_{i + 1}" for i in range(k)]
    if len(id_col) != n or len(names) != k:
        raise ValueError(f"{len(id_col)} ids and {len(names)} class names for probabilities of shape {probs.shape}")
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        f.write(",".join(["id"] + names) + "\n")
        # 9 significant digits: float32 probabilities round-trip, so scores computed from the file match
        np.savetxt(f, np.column_stack([id_col.astype(np.float64), probs]), fmt=["%d"] + ["%.9g"] * k, delimiter=",")
    return path


def write_record_predictions(path: PathLike, pred: Predictions, class_names: Sequence[str]) -> Path:
    """CSV ``key,predicted,<class 1>,...``: one row per record (image models)."""
    path, probs = Path(path), pred.probs
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "predicted"] + list(class_names))
        for key, b, row in zip(pred.keys, probs.argmax(axis=1), probs):
            w.writerow([key, class_names[b]] + [f"{p:.9g}" for p in row])
    return path


def write_scores(metrics: Mapping[str, object], confusion: np.ndarray, json_path: Path, png_path: Path, *,
                 fields: Mapping[str, object], count: str, n: int, class_names: Sequence[str],
                 echo: Optional[Callable[[str], object]] = None, confusion_in_json: bool = False,
                 unit: str = "records") -> List[Path]:
    """The scores of labelled data: one echoed line, a JSON file (``fields``, ``count``: n, the metrics
    with non-finite values as null, the matrix when ``confusion_in_json``) and the confusion-matrix PNG."""
    from .plots import plot_confusion

    if echo is not None:
        echo(f"{n} {count}: " + ", ".join(f"{k.replace('_', '-')} {v:.4f}"
                                          for k, v in metrics.items() if isinstance(v, float)))
    body = {**fields, count: n, **{k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                                   for k, v in metrics.items()}}
    body["class_names"] = list(class_names)  # row/column k of the confusion matrix
    if confusion_in_json:
        body["confusion"] = confusion.tolist()
    with atomic_file(json_path) as tmp_json, atomic_file(png_path) as tmp_png:  # both or neither
        Path(tmp_json).write_text(json.dumps(body, indent=1) + "\n")
        plot_confusion(confusion, Path(tmp_png), class_names=class_names, unit=unit)
    return [json_path, png_path]
