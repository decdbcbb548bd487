"""Apply a trained net to new data: class probabilities, and Otto-style ``id,Class_1..`` CSV files."""
from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..device import DeviceFeeder
from ..loaders.base import Source
from .feeding import batch_stream
from .models import ModelDef
from .net import Net


def predict_proba(net: Net, model: ModelDef, source: Source, *, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities (len(source), num_classes) in source order, test mode."""
    stream = batch_stream(source, batch_size=batch_size, workers=0, shuffle=False, seed=0, drop_last=False)
    feeder = DeviceFeeder(net.backend, scale=model.scale, mean=model.mean, log1p=model.log1p, dtype=net.dtype)
    out = np.empty((len(source), net.num_classes), dtype=np.float32)
    row = 0
    with feeder, closing(stream):
        for batch in feeder.feed(stream.epoch(0), slots=stream.slot_arrays):
            probs = net.backend.to_numpy(net.predict_proba(batch["data"]))
            out[row:row + len(probs)] = probs
            row += len(probs)
    return out


def write_class_probabilities(path: Union[str, Path], probs: np.ndarray, *,
                              ids: Optional[Sequence[int]] = None,
                              class_names: Optional[Sequence[str]] = None) -> Path:
    """CSV ``id,Class_1,...,Class_K`` (Kaggle Otto's submission layout); ids default to 1..N."""
    probs = np.asarray(probs)
    n, k = probs.shape
    ids = np.arange(1, n + 1) if ids is None else np.asarray(ids)
    names = list(class_names) if class_names is not None else [f"Class_{i + 1}" for i in range(k)]
    if len(ids) != n or len(names) != k:
        raise ValueError(f"{len(ids)} ids and {len(names)} class names for probabilities of shape {probs.shape}")
    path = Path(path)
    with open(path, "w", newline="") as f:
        f.write(",".join(["id"] + names) + "\n")
        np.savetxt(f, np.column_stack([ids.astype(np.float64), probs]), fmt=["%d"] + ["%.6g"] * k,
                   delimiter=",")
    return path
