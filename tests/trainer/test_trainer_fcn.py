"""fcn_small end to end: training on the synthetic shapes set, IoU metrics, ignore_label padding, palette PNG predictions."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import cv2
import numpy as np
import pytest
from PIL import Image

from feedstock.fixtures.segdata import shapes_split
from feedstock.palette import voc_palette, write_palette_png
from feedstock.phase import TEST, TRAIN
from feedstock.stream import Stream
from feedstock.trainer import train
from feedstock.trainer.seg.metrics import SegMeter, confusion, majority_baseline, scores
from feedstock.trainer.seg.models import fcn_small
from feedstock.trainer.seg.net import SegNet

SOLVER = {"base_lr": 0.1, "momentum": 0.9, "weight_decay": 0.0005, "lr_policy": "poly", "power": 1.0,
          "max_iter": 120, "display": 0, "test_interval": 0}
PINNED_MEAN_IOU = 0.45  # this run measured 0.577 (pixel accuracy 0.925); the majority-class baseline is 0.22


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    shapes_split("train", root)
    shapes_split("test", root)
    return root


def _masks(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_fcn_small_beats_the_majority_baseline_on_shapes(shapes: Path, no_leaks: None) -> None:
    """Random 48x48 crops + mirror in TRAIN; whole 96x128 test images (the net reshapes) in TEST."""
    train_stream = Stream(source=str(shapes / "train/images"), masks=str(shapes / "train/masks"),
                          source_type="pairs", crop_size=48, mirror=True, batch_size=8, workers=0, seed=0)
    test_stream = Stream(source=str(shapes / "test/images"), masks=str(shapes / "test/masks"),
                         source_type="pairs", batch_size=16, workers=0)
    report = train(fcn_small(width=8), train_stream, test_stream, SOLVER, backend="numpy", plots=False, seed=0)
    m = report.test_metrics
    assert report.task == "segmentation" and report.iters == 120
    # The baseline from the mask files alone: background everywhere.
    # The baseline from the mask files alone: the majority class (background) everywhere has IoU = its
    # pixel fraction, every other class (all present) IoU 0.
    counts = np.bincount(_masks(shapes / "test/masks").ravel(), minlength=256)
    assert counts[4:].sum() == 0 and (counts[:4] > 0).all()
    majority = counts.max() / counts.sum()
    assert m["mean_iou"] >= PINNED_MEAN_IOU >= 2 * majority / 4
    assert m["accuracy"] > majority
    assert m["mean_iou"] == pytest.approx(np.mean([m[f"iou_{c}"] for c in range(4)]))
    assert len(report.history["test_mean_iou"]) == 1 and "test_iou_3" in report.history


# -- ignore_label padding ---------------------------------------------------------------------------------
def _pairs(tmp: Path, sizes: Tuple[Tuple[int, int], ...]) -> Tuple[Path, Path, int]:
    rng = np.random.default_rng(0)
    (tmp / "images").mkdir()
    (tmp / "masks").mkdir()
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(tmp / f"images/p{i}.png"), rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
        write_palette_png(tmp / f"masks/p{i}.png", rng.integers(0, 3, size=(h, w)).astype(np.uint8))
    return tmp / "images", tmp / "masks", sum(h * w for h, w in sizes)


def test_padding_carries_ignore_label_and_is_excluded_from_loss_and_iou(tmp_path: Path, no_leaks: None) -> None:
    sizes = ((20, 24), (16, 28), (24, 20))
    images, masks, real = _pairs(tmp_path, sizes)
    stream = Stream(source=str(images), masks=str(masks), source_type="pairs", batch_size=3, workers=0)
    with stream.build_loader(TEST, shuffle=False, caffe_layout=True) as loader:
        batch = {k: np.array(v) for k, v in next(iter(loader)).items()}
    label = batch["label"]
    assert label.shape == (3, 1, 24, 28)
    for i, (h, w) in enumerate(sizes):  # padded at the bottom and right with ignore_label
        assert (label[i, 0, h:] == 255).all() and (label[i, 0, :, w:] == 255).all()
        assert (label[i, 0, :h, :w] < 3).all()
    net = fcn_small(num_classes=3, width=2, input_shape=(3, 24, 28)).build(dtype=np.float64)
    x = (batch["data"].astype(np.float64) - 128) / 128
    labels = net.loss_labels(label.astype(np.int64))
    meter = net.meter()
    meter.update(net.forward(x), labels)
    assert meter.confusion.sum() == real  # IoU counts the image pixels only
    loss, _ = net.forward_backward(x, labels)
    assert int(net.loss.valid.sum()) == real
    s = net.forward(x)
    z = s - s.max(axis=1, keepdims=True)
    nll = np.log(np.exp(z).sum(axis=1)) - np.take_along_axis(z, np.where(labels == 255, 0, labels)[:, None], 1)[:, 0]
    expected = sum(nll[i, :h, :w].sum() for i, (h, w) in enumerate(sizes)) / real
    assert float(loss) == pytest.approx(expected, rel=1e-9)
    assert meter.result()["loss"] == pytest.approx(expected, rel=1e-9)
    # TRAIN: a crop larger than the image pads it the same way.
    crop = stream.replace(crop_size=30, mirror=True, seed=1)
    with crop.build_loader(TRAIN, caffe_layout=True) as loader:
        lab = np.array(next(iter(loader))["label"])
    assert lab.shape == (3, 1, 30, 30) and sorted((lab != 255).sum(axis=(1, 2, 3))) == sorted(h * w for h, w in sizes)


# -- SegNet --------------------------------------------------------------------------------------------
def test_segnet_takes_any_size_with_shared_parameters() -> None:
    net = fcn_small(num_classes=3, width=2, input_shape=(3, 32, 32)).build()
    assert isinstance(net, SegNet) and net.task == "segmentation"
    x = np.random.default_rng(0).normal(size=(2, 3, 30, 34)).astype(np.float32)
    assert net.forward(x).shape == (2, 3, 30, 34)  # 30 and 34 are no multiples of 4: Crop aligns
    other = net.for_shape((3, 30, 34))
    assert other is not net and all(a is b for a, b in zip(other.params, net.params))
    labels = np.random.default_rng(1).integers(0, 3, size=(2, 30, 34))
    net.forward_backward(x, labels)
    assert any(np.abs(p.grad).sum() > 0 for p in net.params)  # grads of the reshaped pass land here
    with pytest.raises(ValueError, match=r"takes \(3, H, W\)"):
        net.forward(np.zeros((1, 1, 32, 32), np.float32))
    assert net.input_reshape((3, 50, 70), "v") is None  # the batch check lets any size through
    with pytest.raises(ValueError, match=r"^v: records of shape \(1, 8, 8\), the model takes \(3, H, W\)"):
        net.input_reshape((1, 8, 8), "v")


def test_bilinear_upscore_starts_as_interpolation_of_the_scores() -> None:
    """At initialisation upscore + crop upsample the 1x1 scores bilinearly: a constant score map stays constant."""
    net = fcn_small(num_classes=2, width=2, input_shape=(3, 32, 32)).build()
    up = net.layers[-2]
    s = np.full((1, 2, 8, 8), 0.7, np.float32)
    y = up.forward(s, train=False)
    np.testing.assert_allclose(y[:, :, 4:-4, 4:-4], 0.7, rtol=1e-6)


def test_segnet_label_check_names_the_batch() -> None:
    net = fcn_small(num_classes=3, width=2, input_shape=(3, 16, 16)).build()
    net.check_labels(np.array([[[[0, 2], [255, 1]]]], np.float32), "w")
    with pytest.raises(ValueError, match=r"^train batch 3: label values \[3\.0\]"):
        net.check_labels(np.array([[[[0, 3]]]], np.float32), "train batch 3")
    with pytest.raises(ValueError, match="per-pixel class labels"):
        net.check_labels(np.zeros((2, 3)), "w")
    with pytest.raises(ValueError, match=r"label values \[1\.5\]"):
        net.check_labels(np.array([[[1.5]]]), "w")


# -- metrics ---------------------------------------------------------------------------------------------
def test_confusion_iou_and_pixel_accuracy_by_hand() -> None:
    truth = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    m = confusion(pred, truth, 4)
    np.testing.assert_array_equal(m, [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    s = scores(m)
    # IoU: class 0: 1 / (2 + 2 - 1); class 1: 2 / (2 + 3 - 2); class 2: 1 / (2 + 1 - 1); class 3 absent: nan
    np.testing.assert_allclose(s.iou[:3], [1 / 3, 2 / 3, 1 / 2])
    assert np.isnan(s.iou[3])
    assert s.mean_iou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s.pixel_accuracy == pytest.approx(4 / 6)
    assert s.mean_accuracy == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    base = majority_baseline(m)  # class 1 and 0 tie at 2 pixels: argmax takes class 0
    assert base.pixel_accuracy == pytest.approx(2 / 6) and base.mean_iou == pytest.approx((2 / 6) / 3)
    with pytest.raises(ValueError, match=r"labels span \[0, 7\]"):
        confusion(pred, np.where(truth == 255, 7, truth), 4)


def test_seg_meter_accumulates_batches() -> None:
    rng = np.random.default_rng(3)
    scores_ = rng.normal(size=(4, 3, 5, 6))
    labels = rng.integers(0, 3, size=(4, 1, 5, 6))
    labels[0, 0, 0] = 255
    meter = SegMeter(3)
    meter.update(scores_[:2], labels[:2, 0])
    meter.update(scores_[2:], labels[2:])
    whole = confusion(scores_.argmax(axis=1), labels[:, 0], 3)
    np.testing.assert_array_equal(meter.confusion, whole)
    assert meter.result()["mean_iou"] == pytest.approx(scores(whole).mean_iou)


# -- palette PNGs ---------------------------------------------------------------------------------------
def test_palette_png_keeps_indices_and_voc_colours(tmp_path: Path) -> None:
    mask = np.array([[0, 1, 2], [3, 255, 20]], np.uint8)
    path = write_palette_png(tmp_path / "sub/m.png", mask)
    im = Image.open(path)
    assert im.mode == "P"
    np.testing.assert_array_equal(np.asarray(im), mask)
    pal = np.array(im.getpalette()[:768]).reshape(-1, 3)
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 20: (0, 64, 128),
                255: (224, 224, 192)}  # PASCAL VOC's colour map
    for index, rgb in expected.items():
        assert tuple(pal[index]) == rgb and tuple(voc_palette()[3 * index:3 * index + 3]) == rgb
    with pytest.raises(ValueError, match="palette PNG"):
        write_palette_png(tmp_path / "bad.png", np.full((2, 2), 300))


def test_a_pairs_validation_path_without_its_masks_is_refused(shapes: Path, no_leaks: None) -> None:
    # the training masks folder would match the validation images by stem: wrong masks, silently
    stream = Stream(source=str(shapes / "train" / "images"), masks=str(shapes / "train" / "masks"),
                    source_type="pairs", crop_size=32, batch_size=4, workers=0)
    with pytest.raises(ValueError, match="need their own masks"):
        train("fcn_small", stream, str(shapes / "test" / "images"), iters=1, plots=False)
