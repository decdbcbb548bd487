"""What a snapshot carries so ``feedstock predict`` needs no training flags: model, input, classes, TEST stream."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import SNAPSHOT_ERRORS, unreadable_snapshot
from ..loaders import CaffeLmdb, CsvTable, ImageFolder, ListFile
from ..loaders.csv_classes import read_classes
from .feeding import Subset
from .models import MODELS, ModelDef

PathLike = Union[str, Path]
IDENTITY = {"scale": 1.0, "mean": 0.0, "log1p": False}  # the device conversion when the stream did it


@dataclass(frozen=True)
class Deployment:
    """The model (name, layers, per-record input shape, task), class names, the device input conversion
    (scale, mean, log1p) and the Stream fields whose TEST phase feeds predict (None: stored values)."""

    model: str
    layers: Tuple[Mapping[str, Any], ...]
    input_shape: Tuple[int, ...]
    task: str = "classification"
    class_names: Optional[Tuple[str, ...]] = None
    conversion: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(IDENTITY))
    stream: Optional[Mapping[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples become lists: plain JSON

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "snapshot") -> "Deployment":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"model", "layers", "input_shape"} - set(values)
        if missing or set(values) - names:
            raise ValueError(f"{where}: deploy record has keys {sorted(values)}, expected {sorted(names)}")
        out = dict(values)
        out["layers"] = tuple(dict(s) for s in out["layers"])
        out["input_shape"] = tuple(int(d) for d in out["input_shape"])
        if out.get("class_names") is not None:
            out["class_names"] = tuple(str(c) for c in out["class_names"])
        return cls(**out)

    def model_def(self) -> ModelDef:
        """The ModelDef to rebuild the net with: a named model's own class (its task), these layers."""
        base = MODELS[self.model]() if self.model in MODELS else None
        if base is not None:
            return dataclasses.replace(base, layers=self.layers, input_shape=self.input_shape)
        return ModelDef(self.model, self.layers, self.input_shape)


def deployment(mdef: ModelDef, *, task: str, class_names: Optional[Sequence[str]], model_scaling: bool,
               stream: Optional[Mapping[str, Any]]) -> Deployment:
    """The record of a training run: the device conversion actually applied, the TEST-phase stream."""
    conversion = {"scale": float(mdef.scale), "mean": float(mdef.mean), "log1p": bool(mdef.log1p)}
    return Deployment(mdef.name, tuple(dict(s) for s in mdef.layers), tuple(mdef.input_shape), task,
                      None if class_names is None else tuple(str(c) for c in class_names),
                      conversion if model_scaling else dict(IDENTITY),
                      None if stream is None else dict(stream))


def read_snapshot(path: PathLike) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """(meta, params by name) of an npz written by SGDSolver.snapshot; errors name the file."""
    try:
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            params = {k[6:]: z[k] for k in z.files if k.startswith("param/")}
    except SNAPSHOT_ERRORS as e:
        raise ValueError(unreadable_snapshot(path, e)) from None
    return meta, params


def load_deployment(path: PathLike) -> Tuple[Deployment, Dict[str, np.ndarray]]:
    """The Deployment and the weights of a snapshot; a snapshot without one is an error naming it."""
    meta, params = read_snapshot(path)
    record = meta.get("extra", {}).get("deploy")
    if record is None:
        raise ValueError(f"{path}: the snapshot has no deploy record (written by an older feedstock train)")
    return Deployment.from_dict(record, str(path)), params


def class_names_of(source: Any) -> Optional[List[str]]:
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
