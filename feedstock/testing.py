"""Synthetic datasets for tests and benchmarks: Otto-shaped CSV tables, Caffe LMDBs, image folders.

Every generator takes an explicit ``np.random.Generator`` and returns what it
wrote, so a test can compare a source's output with independent expectations.
"""
from __future__ import annotations

import os
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from .caffe_pb import array_to_datum, encoded_datum
from .writers.lmdb_writer import LmdbWriter

# Class sizes of the real Kaggle Otto train.csv (61,878 rows): imbalanced, Class_2 largest.
OTTO_CLASS_COUNTS = (1929, 16122, 8004, 2691, 2739, 14135, 2839, 8464, 4955)


def otto_table(rng: np.random.Generator, rows: int = 61878, features: int = 93) -> Tuple[np.ndarray, np.ndarray]:
    """(counts int64 (rows, features), labels 0..8 sorted) shaped like Otto: sparse small counts."""
    p = np.asarray(OTTO_CLASS_COUNTS, dtype=np.float64)
    labels = np.sort(rng.choice(len(p), size=rows, p=p / p.sum()))
    # ~80% zeros, a geometric tail of small counts, like the real features.
    counts = (rng.geometric(0.35, size=(rows, features)) - 1) * (rng.random((rows, features)) < 0.2)
    return counts.astype(np.int64), labels


def write_otto_csv(path: str, counts: np.ndarray, labels: np.ndarray | None, *, first_id: int = 1) -> None:
    """Write ``id,feat_1..feat_F[,target]`` with targets ``Class_<label+1>``; no label column when None."""
    rows, features = counts.shape
    header = ["id"] + [f"feat_{j + 1}" for j in range(features)] + ([] if labels is None else ["target"])
    row_format = "%d," + ",".join(["%d"] * features) + ("" if labels is None else ",Class_%d")
    lines = [",".join(header)]
    for r, row in enumerate(np.asarray(counts, dtype=np.int64).tolist()):
        values = (r + first_id, *row) if labels is None else (r + first_id, *row, int(labels[r]) + 1)
        lines.append(row_format % values)
    with open(path, "w", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def make_otto_csv(path: str, rng: np.random.Generator, rows: int = 61878, features: int = 93,
                  *, with_target: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Generate and write an Otto-shaped table; returns (counts, labels)."""
    counts, labels = otto_table(rng, rows, features)
    write_otto_csv(path, counts, labels if with_target else None)
    return counts, labels


def make_raw_lmdb(path: str, rng: np.random.Generator, n: int, shape: Sequence[int] = (3, 32, 32),
                  *, classes: int = 10, dtype=np.uint8) -> Tuple[np.ndarray, np.ndarray]:
    """A convert_imageset-style LMDB of raw Datums (uint8 ``data`` or float ``float_data``).

    Keys ``%08d_img<i>.png``; returns (images (n, C, H, W), labels (n,)).
    """
    images = rng.integers(0, 256, size=(n, *shape)).astype(dtype)
    labels = rng.integers(0, classes, size=n)
    with LmdbWriter(path) as w:
        for i in range(n):
            w.put_datum(i, f"img{i}.png", array_to_datum(images[i], int(labels[i]), encoded_false=True))
    return images, labels


def make_encoded_lmdb(path: str, images: Sequence[np.ndarray], labels: Sequence[int], *, ext: str = ".png") -> List[bytes]:
    """An LMDB of encoded Datums (convert_imageset ``--encoded``: no C/H/W) from HWC BGR images.

    Returns the encoded payloads, so a test can decode them independently.
    """
    payloads = []
    with LmdbWriter(path) as w:
        for i, (img, label) in enumerate(zip(images, labels)):
            ok, buf = cv2.imencode(ext, img)
            if not ok:
                raise ValueError(f"OpenCV cannot encode image {i} as {ext}")
            payloads.append(buf.tobytes())
            w.put_datum(i, f"img{i}{ext}", encoded_datum(payloads[-1], int(label)))
    return payloads


def make_image_folder(root: str, rng: np.random.Generator, classes: Sequence[str] = ("cat", "dog"),
                      per_class: int = 3, size: Tuple[int, int] = (12, 16), ext: str = ".png") -> List[Tuple[str, int]]:
    """``root/<class>/<i><ext>`` random HWC BGR images; returns (path, label) in ImageFolder order."""
    out = []
    for label, name in enumerate(sorted(classes)):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            path = os.path.join(root, name, f"{i:03d}{ext}")
            img = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            if not cv2.imwrite(path, img):
                raise ValueError(f"OpenCV cannot write {path}")
            out.append((path, label))
    return out
