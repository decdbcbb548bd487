"""Segmentation scores from a confusion matrix: per-class IoU, mean IoU, pixel accuracy (ignored pixels excluded)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ...backend import Array, array_module
from ..metrics import confusion
from .layers import pixel_labels


@dataclass
class SegScores:
    """Scores of a confusion matrix; a class absent from both labels and predictions has IoU nan."""

    matrix: np.ndarray
    iou: List[float] = field(default_factory=list)
    mean_iou: float = float("nan")
    pixel_accuracy: float = float("nan")
    mean_accuracy: float = float("nan")


def scores(matrix: np.ndarray) -> SegScores:
    """IoU_c = TP / (TP + FP + FN); mean IoU over classes present in labels or predictions (FCN's nanmean)."""
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    union = m.sum(axis=0) + m.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        per_class_acc = np.where(m.sum(axis=1) > 0, tp / m.sum(axis=1), np.nan)
    total = m.sum()
    return SegScores(
        matrix=np.asarray(matrix, dtype=np.int64), iou=[float(v) for v in iou],
        mean_iou=float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
        mean_accuracy=float(np.nanmean(per_class_acc)) if np.isfinite(per_class_acc).any() else float("nan"))


def majority_baseline(matrix: np.ndarray) -> SegScores:
    """The scores of predicting the most frequent true class everywhere (same pixels as ``matrix``)."""
    m = np.asarray(matrix, dtype=np.int64)
    truth = m.sum(axis=1)
    base = np.zeros_like(m)
    base[:, int(np.argmax(truth))] = truth
    return scores(base)


class SegMeter:
    """The segmentation net's meter (see ``Net.meter``): per-pixel loss and the confusion matrix.

    ``result()`` gives loss (mean over non-ignored pixels, Caffe's VALID normalization),
    accuracy (= pixel accuracy), mean_iou, mean_accuracy and iou_<class> per class.
    """

    def __init__(self, num_classes: int, ignore_label: Optional[int] = 255) -> None:
        self.num_classes, self.ignore_label = int(num_classes), ignore_label
        self.loss_sum = 0.0
        self._confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, scores: Array, labels: Array) -> None:
        """Add a batch: scores (N, K, H, W) and labels (N, 1, H, W) or (N, H, W) (device or host arrays)."""
        xp = array_module(scores)
        lab = pixel_labels(labels, tuple(scores.shape))
        self._confusion += confusion(scores.argmax(axis=1), lab, self.num_classes, ignore_label=self.ignore_label)
        valid = lab != self.ignore_label if self.ignore_label is not None else xp.ones(lab.shape, dtype=bool)
        z = scores.astype(xp.float64) - scores.max(axis=1, keepdims=True)
        log_norm = xp.log(xp.exp(z).sum(axis=1))
        picked = xp.take_along_axis(z, xp.where(valid, lab, 0)[:, None], axis=1)[:, 0]
        # Caffe's loss clamps p at FLT_MIN: -log p is at most -log(FLT_MIN).
        nll = xp.minimum(log_norm - picked, -np.log(np.finfo(np.float32).tiny))
        self.loss_sum += float((nll * valid).sum())

    def result(self) -> Dict[str, float]:
        s = scores(self._confusion)
        out = {"loss": self.loss_sum / max(1, int(self._confusion.sum())), "accuracy": s.pixel_accuracy,
               "mean_iou": s.mean_iou, "mean_accuracy": s.mean_accuracy}
        out.update({f"iou_{c}": v for c, v in enumerate(s.iou)})
        return out

    @property
    def confusion(self) -> np.ndarray:
        """(K, K) pixel counts: row = true class, column = predicted class (ignored pixels left out)."""
        return self._confusion.copy()
