"""Segmentation predictions from a snapshot: one palette PNG per image at its own size, IoU checked from the files."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
import pytest
from PIL import Image

from feedstock.palette import write_palette_png
from feedstock.stream import Stream
from feedstock.trainer import train
from feedstock.trainer.predict import Predictor
from feedstock.trainer.seg.metrics import confusion, scores
from feedstock.trainer.seg.models import fcn_small
from feedstock.trainer.seg.predict import predict_masks

SIZES = ((20, 24), (16, 28), (24, 20), (20, 20))


def _pairs(root: Path, sizes: Tuple[Tuple[int, int], ...] = SIZES) -> Tuple[Path, Path]:
    """Images whose red squares are class 1 and green squares class 2 on a grey background."""
    rng = np.random.default_rng(0)
    (root / "images/sub").mkdir(parents=True)
    (root / "masks/sub").mkdir(parents=True)
    for i, (h, w) in enumerate(sizes):
        image = np.full((h, w, 3), 120, np.uint8)
        mask = np.zeros((h, w), np.uint8)
        for cls, bgr in ((1, (0, 0, 230)), (2, (0, 230, 0))):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            image[y:y + 8, x:x + 8], mask[y:y + 8, x:x + 8] = bgr, cls
        folder = "sub/" if i % 2 else ""
        cv2.imwrite(str(root / f"images/{folder}p{i}.png"), image)
        write_palette_png(root / f"masks/{folder}p{i}.png", mask)
    return root / "images", root / "masks"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Tuple[str, Path, Path]:
    root = tmp_path_factory.mktemp("pairs")
    images, masks = _pairs(root)
    stream = Stream(source=str(images), masks=str(masks), source_type="pairs", crop_size=16, batch_size=4,
                    workers=0, seed=0)
    solver = {"base_lr": 0.05, "momentum": 0.9, "max_iter": 30, "display": 0, "test_interval": 0}
    report = train(fcn_small(num_classes=3, width=4, input_shape=(3, 16, 16)), stream, None, solver,
                   root / "out", backend="numpy", plots=False, seed=0)
    return next(f for f in report.files if f.endswith(".npz")), images, masks


def _read(paths: List[Path]) -> List[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in paths]


def test_predicted_masks_are_palette_pngs_of_each_image_size(snapshot, tmp_path: Path, no_leaks: None) -> None:
    snap, images, masks = snapshot
    predictor = Predictor(snap, backend="numpy")
    assert predictor.net.task == "segmentation"
    lines: List[str] = []
    files = predict_masks(predictor, images, tmp_path / "pred", masks=str(masks), batch_size=3, echo=lines.append)
    written = sorted((tmp_path / "pred").rglob("*.png"))
    names = sorted(p.relative_to(tmp_path / "pred").as_posix() for p in written
                   if p.name not in ("confusion.png", "sheet.png"))
    assert names == ["p0.png", "p2.png", "sub/p1.png", "sub/p3.png"]
    truth, pred = [], []
    for name in names:
        im = Image.open(tmp_path / "pred" / name)
        assert im.mode == "P"
        mask = np.asarray(Image.open(masks / name))
        assert np.asarray(im).shape == mask.shape  # whole image at its own size, padding cut off
        truth.append(mask.ravel())
        pred.append(np.asarray(im).ravel())
    expected = scores(confusion(np.concatenate(pred), np.concatenate(truth), 3))
    metrics = json.loads((tmp_path / "pred/metrics.json").read_text())
    assert metrics["images"] == 4 and sum(map(sum, metrics["confusion"])) == sum(h * w for h, w in SIZES)
    assert metrics["mean_iou"] == pytest.approx(expected.mean_iou)
    assert metrics["accuracy"] == pytest.approx(expected.pixel_accuracy)
    assert lines and "mean-iou" in lines[0] and tmp_path / "pred/confusion.png" in files
    sheet = np.asarray(Image.open(tmp_path / "pred/sheet.png"))  # truth | prediction | overlay, one row per image
    assert tmp_path / "pred/sheet.png" in files and sheet.shape[1] == 3 * 160 + 4 * 4 and sheet.shape[0] > 4 * 160


def test_images_without_masks_give_masks_only(snapshot, tmp_path: Path, no_leaks: None) -> None:
    snap, images, _ = snapshot
    files = predict_masks(Predictor(snap, backend="numpy"), images, tmp_path / "pred")
    assert files == [tmp_path / "pred", tmp_path / "pred/sheet.png"]
    written = sorted(p for p in (tmp_path / "pred").rglob("*.png") if p.name != "sheet.png")
    assert len(written) == 4 and not (tmp_path / "pred/metrics.json").exists()
    shapes = sorted(m.shape for m in _read(written))
    assert shapes == sorted(SIZES)


def test_cli_trains_with_val_masks_and_predicts_pngs(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     no_leaks: None) -> None:
    """--val gets its own --val-masks (the training masks share its stems); predict --masks scores the PNGs."""
    from feedstock.cli.main import main

    images, masks = _pairs(tmp_path / "train")
    val_masks = tmp_path / "val_masks"
    for path in masks.rglob("*.png"):  # the same images, every pixel background
        mask = np.asarray(Image.open(path))
        write_palette_png(val_masks / path.relative_to(masks), np.zeros_like(mask))
    out = tmp_path / "out"
    common = ["--train", str(images), "--masks", str(masks), "--source-type", "pairs", "--crop-size", "16",
              "--batch-size", "2", "--workers", "0", "--iters", "3", "--backend", "numpy", "--no-plots", "-q"]
    assert main(["train", "--model", "fcn_small", *common, "--val", str(images), "--val-masks", str(val_masks),
                 "--out", str(out)]) == 0
    test = json.loads((out / "fcn_small_metrics.json").read_text())["test"]
    assert test["iou_0"] == pytest.approx(test["accuracy"])  # only background in the truth: IoU_0 = accuracy
    assert test["mean_iou"] is not None
    snap = str(out / "fcn_small_iter_3.npz")
    assert main(["predict", snap, str(images), "--masks", str(val_masks), "--out", str(tmp_path / "m.csv"),
                 "--backend", "numpy"]) == 0
    assert len(list((tmp_path / "m").rglob("p*.png"))) == 4
    assert json.loads((tmp_path / "m/metrics.json").read_text())["images"] == 4
    capsys.readouterr()
    assert main(["train", "--model", "fcn_small", *common[:2], "--val", str(images), "--val-masks", "x",
                 "--out", str(out), "-q"]) == 1
    assert "--val-masks applies to a pairs --val" in capsys.readouterr().err
