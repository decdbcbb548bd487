"""Evaluation metrics: Kaggle's multi-class log-loss, the confusion matrix, the classification meter and the label check.

The Net owns its task's hooks (``Net.task``, ``input_reshape``, ``check_labels``,
``loss_labels``, ``meter``, ``output_rank``; see :mod:`.nn.net`): a segmentation net
(SegNet) overrides them with per-pixel versions, and the loop, the report and
``feedstock predict`` only call them.
"""
from __future__ import annotations

from typing import Dict, Optional, Protocol

import numpy as np

from ..backend import Array, array_module

LOG_LOSS_EPS = 1e-15  # Kaggle's clipping for the multi-class log-loss


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """Row-wise softmax in float64 (host), stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def multiclass_log_loss(probs: np.ndarray, labels: np.ndarray, *, eps: float = LOG_LOSS_EPS) -> float:
    """Kaggle's formula: clip to [eps, 1 - eps], renormalise each row, mean of -log p(true class)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    p /= p.sum(axis=1, keepdims=True)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(p):
        raise ValueError(f"{len(labels)} labels for {len(p)} rows of probabilities")
    return float(-np.log(p[np.arange(len(p)), labels]).mean()) if len(p) else float("nan")


def confusion(pred: Array, labels: Array, num_classes: int, *, ignore_label: Optional[int] = 255) -> np.ndarray:
    """Host (K, K) int64 counts: row = true class, column = predicted, over the records (a classifier's)
    or pixels (a segmentation net's) whose label is not ``ignore_label`` (None: every one counts).

    ``pred`` and ``labels`` hold class indices of the same number of records or pixels (any shapes
    with equal size, numpy or cupy). A label outside [0, K) that is not ``ignore_label`` is an error.
    """
    xp = array_module(pred)
    p = pred.reshape(-1).astype(xp.int64, copy=False)
    t = labels.reshape(-1).astype(xp.int64, copy=False)
    if p.size != t.size:
        raise ValueError(f"{p.size} predicted pixels for {t.size} labelled pixels")
    if ignore_label is not None:
        keep = t != ignore_label
        p, t = p[keep], t[keep]
    if t.size and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"labels span [{int(t.min())}, {int(t.max())}], expected [0, {num_classes}) "
                         f"or ignore_label={ignore_label}")
    counts = xp.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    counts = counts.get() if hasattr(counts, "get") else counts
    return np.asarray(counts, dtype=np.int64).reshape(num_classes, num_classes)


class Meter(Protocol):
    """Accumulates one evaluation pass from (scores, labels) batches; ``result()`` has at least
    ``loss`` and ``accuracy``; ``confusion`` is the (K, K) matrix, row = true, column = predicted."""

    def update(self, scores: Array, labels: Array) -> None: ...

    def result(self) -> Dict[str, float]: ...

    @property
    def confusion(self) -> np.ndarray: ...


# Label layouts a classifier accepts per record: a scalar, Caffe's (1,) and (1, 1, 1) blobs.
LABEL_SHAPES = ((), (1,), (1, 1, 1))


def check_class_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """ValueError naming ``where`` unless ``labels`` are class indices in [0, num_classes) laid out
    (N,), (N, 1) or (N, 1, 1, 1), integers or floats holding integers (HDF5 stores float labels)."""
    labels = np.asarray(labels)
    if tuple(labels.shape[1:]) not in LABEL_SHAPES:
        raise ValueError(f"{where}: shape {tuple(labels.shape)}, expected class labels (N,), (N, 1) or (N, 1, 1, 1)")
    if labels.dtype.kind not in "iuf":
        raise ValueError(f"{where}: dtype {labels.dtype}, expected integer class labels")
    flat = labels.reshape(-1)
    if labels.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(flat) | (flat != np.floor(flat)))
        if len(bad):
            raise ValueError(f"{where}: row {bad[0]} holds {flat[bad[0]].item()}, expected an integer class label")
    bad = np.flatnonzero((flat < 0) | (flat >= num_classes))
    if len(bad):
        raise ValueError(f"{where}: row {bad[0]} holds {flat[bad[0]].item()}, expected a class in [0, {num_classes})")


class ClassificationMeter:
    """Loss (Caffe's: -log max(p, FLT_MIN)), top-k accuracy, Kaggle log-loss and the confusion matrix."""

    def __init__(self, num_classes: int, top_k: int = 1) -> None:
        self.num_classes, self.top_k = int(num_classes), int(top_k)
        self.count = self.correct = 0
        self.loss_sum = self.log_loss_sum = 0.0
        self._confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, scores: Array, labels: Array) -> None:
        """Add a batch: scores (N, K) logits and labels (N,) class indices (device or host arrays)."""
        s = _host(scores).astype(np.float64)
        y = _host(labels).astype(np.int64).reshape(-1)
        rows = np.arange(len(y))
        p = softmax(s)
        self.loss_sum += float(-np.log(np.maximum(p[rows, y], np.finfo(np.float32).tiny)).sum())
        self.log_loss_sum += multiclass_log_loss(p, y) * len(y) if len(y) else 0.0
        better = (s > s[rows, y][:, None]).sum(axis=1)  # Caffe's Accuracy: ties count as correct
        self.correct += int((better < self.top_k).sum())
        self.count += len(y)
        self._confusion += confusion(p.argmax(axis=1), y, self.num_classes, ignore_label=None)

    def result(self) -> Dict[str, float]:
        n = max(self.count, 1)
        return {"loss": self.loss_sum / n, "accuracy": self.correct / n, "log_loss": self.log_loss_sum / n}

    @property
    def confusion(self) -> np.ndarray:
        """(K, K) counts: row = true class, column = predicted class."""
        return self._confusion.copy()


def _host(a: Array) -> np.ndarray:
    xp = array_module(a)
    return np.asarray(a) if xp is np else xp.asnumpy(a)
