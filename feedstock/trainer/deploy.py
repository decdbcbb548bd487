"""What a snapshot carries so ``feedstock predict`` needs no training flags: model, input, classes, TEST stream.

Everything is carried by value, never by path: the class names, a CSV's feature
column names, the stream settings and the mean image (an npz array, ``deploy/mean_image``),
so a snapshot predicts from any folder after the training data and mean file are gone.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, TypedDict, Union

import numpy as np

from ..loaders import CaffeLmdb, CsvTable, ImageFolder, ListFile
from ..loaders.csv_classes import read_classes
from ..protocols import Source
from .feeding import Subset
from .models import MODELS, ModelDef
from .snapshot_io import SnapshotData, read_snapshot

PathLike = Union[str, Path]
class Conversion(TypedDict):
    """The input scaling a snapshot's net was trained with (DeviceFeeder's keywords)."""

    scale: float
    mean: float
    log1p: bool


IDENTITY: Conversion = {"scale": 1.0, "mean": 0.0, "log1p": False}  # the device conversion when the stream did it


@dataclass(frozen=True)
class Deployment:
    """The model (name, layers, per-record input shape, task), class names, the device input conversion
    (scale, mean, log1p) and the Stream fields whose TEST phase feeds predict (None: stored values)."""

    model: str
    layers: Tuple[Mapping[str, Any], ...]
    input_shape: Tuple[int, ...]
    task: str = "classification"
    class_names: Optional[Tuple[str, ...]] = None
    conversion: Conversion = dataclasses.field(default_factory=IDENTITY.copy)
    stream: Optional[Mapping[str, object]] = None  # the Stream's fields, as stream_from_mapping reads them
    features: Optional[Tuple[str, ...]] = None  # a CSV's feature columns, in the order the net saw them
    mean_from: Optional[str] = None  # the mean file training read (for the record; its values are an array)
    mean_image: Optional[np.ndarray] = dataclasses.field(default=None, compare=False, repr=False)

    def to_dict(self) -> Dict[str, object]:
        """The JSON record (the mean image travels as an npz array: :meth:`arrays`)."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "mean_image"}
        return json.loads(json.dumps(record))  # tuples become lists: plain JSON

    def arrays(self) -> Dict[str, np.ndarray]:
        """The npz arrays the snapshot carries beside the record."""
        return {} if self.mean_image is None else {"mean_image": np.asarray(self.mean_image, np.float32)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "snapshot") -> "Deployment":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"model", "layers", "input_shape"} - set(values)
        if missing or set(values) - names or "mean_image" in values:
            raise ValueError(f"{where}: deploy record has keys {sorted(values)}, expected {sorted(names)}")
        out = dict(values)
        out["layers"] = tuple(dict(s) for s in out["layers"])
        out["input_shape"] = tuple(int(d) for d in out["input_shape"])
        for key in ("class_names", "features"):
            if out.get(key) is not None:
                out[key] = tuple(str(c) for c in out[key])
        return cls(**out)

    def model_def(self) -> ModelDef:
        """The ModelDef to rebuild the net with: a named model's own class (its task), these layers."""
        base = MODELS[self.model]() if self.model in MODELS else None
        if base is not None:
            return dataclasses.replace(base, layers=self.layers, input_shape=self.input_shape)
        return ModelDef(self.model, self.layers, self.input_shape)


def deployment(mdef: ModelDef, *, task: str, class_names: Optional[Sequence[str]], model_scaling: bool,
               stream: Optional[Mapping[str, object]], features: Optional[Sequence[str]] = None) -> Deployment:
    """The record of a training run: the device conversion actually applied, the TEST-phase stream with
    its paths replaced by values (the mean file read into ``mean_image``, the class list by ``class_names``)."""
    conversion: Conversion = {"scale": float(mdef.scale), "mean": float(mdef.mean), "log1p": bool(mdef.log1p)}
    record, mean_from, mean_image = None, None, None
    if stream is not None:
        record = dict(stream, classes="")  # the names themselves are class_names
        if record.get("mean_file"):
            from ..caffe_pb import read_mean_file

            mean_from = str(record["mean_file"])
            mean_image = read_mean_file(mean_from)
            record["mean_file"] = None
    return Deployment(mdef.name, tuple(dict(s) for s in mdef.layers), tuple(mdef.input_shape), task,
                      None if class_names is None else tuple(str(c) for c in class_names),
                      conversion if model_scaling else IDENTITY.copy(), record,
                      None if features is None else tuple(str(c) for c in features), mean_from, mean_image)


def load_deployment(path: PathLike) -> Tuple[Deployment, Dict[str, np.ndarray]]:
    """The Deployment and the weights of a snapshot; a snapshot without one is an error naming it."""
    snap: SnapshotData = read_snapshot(path)
    record = snap.extra.get("deploy")
    if record is None:
        raise ValueError(f"{path}: the snapshot has no deploy record (written by an older feedstock train)")
    deploy = Deployment.from_dict(record, str(path))
    if deploy.mean_from is not None:
        if "mean_image" not in snap.deploy:
            raise ValueError(f"{path}: the deploy record names a mean image but the snapshot holds none")
        deploy = dataclasses.replace(deploy, mean_image=snap.deploy["mean_image"])
    return deploy, snap.params


def feature_columns_of(source: Optional[Source]) -> Optional[List[str]]:
    """A CSV table's feature column names (what predict matches a file's columns by), else None."""
    if isinstance(source, Subset):
        return feature_columns_of(source.source)
    return list(source.columns) if isinstance(source, CsvTable) else None


def class_names_of(source: Source) -> Optional[List[str]]:
    """Class names a source knows: a CSV's labels, a folder's or list file's classes, an LMDB's labels.txt."""
    if isinstance(source, Subset):
        return class_names_of(source.source)
    if isinstance(source, (CsvTable, ImageFolder, ListFile)):
        return None if source.classes is None else [str(c) for c in source.classes]
    if isinstance(source, CaffeLmdb):
        labels = os.path.join(source.path, "labels.txt")  # build-lmdb writes it (DIGITS layout)
        if os.path.isfile(labels):
            return read_classes(labels)
    return None
