"""Bundled models take their class count from the data (class names, labels.txt, the largest label),
``--num-classes`` overrides it; mask sets whose classes would all be ignored are refused before training."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from test_build_helpers import cli_output

from feedstock.cli.main import main
from feedstock.stream import Stream
from feedstock.trainer import train
from feedstock.trainer.deploy import load_deployment

SEG_SOLVER = {"base_lr": 0.05, "max_iter": 2, "display": 0, "test_interval": 0, "lr_policy": "fixed"}


def grey_folder(root, classes, per_class=8, size=28):
    rng = np.random.default_rng(1)
    for name in classes:
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            assert cv2.imwrite(str(root / name / f"{k}.png"), rng.integers(0, 256, (size, size), dtype=np.uint8))
    return root


def outputs_of(snapshot, layer):
    deploy, _ = load_deployment(snapshot)
    return next(s["num_output"] for s in deploy.layers if s.get("name") == layer)


def npz(report):
    return next(p for p in reversed(report.files) if p.endswith(".npz"))


def snapshot_in(out):
    return str(next(out.glob("*.npz")))


def test_a_three_class_lenet_trains_and_predicts_with_its_class_names(tmp_path, capsys):
    data = grey_folder(tmp_path / "d", ["cat", "dog", "emu"])
    out = tmp_path / "out"
    assert main(["train", "--model", "lenet", "--train", str(data), "--gray", "--iters", "2", "--batch-size", "8",
                 "--out", str(out), "-q", "--backend", "numpy"]) == 0
    snapshot = snapshot_in(out)
    assert outputs_of(snapshot, "ip2") == 3
    assert main(["predict", snapshot, str(data), "--out", str(tmp_path / "pred" / "p.csv"), "--backend", "numpy"]) == 0
    header = (tmp_path / "pred" / "p.csv").read_text().splitlines()[0]
    assert header.split(",")[-3:] == ["cat", "dog", "emu"]
    rows = (tmp_path / "pred" / "p.csv").read_text().splitlines()[1:]
    assert len(rows) == 24 and all(len(r.split(",")) == len(header.split(",")) for r in rows)
    assert json.loads((out / "lenet_metrics.json").read_text())["class_names"] == ["cat", "dog", "emu"]
    scored = [json.loads(p.read_text()) for p in (tmp_path / "pred").glob("*.json")]
    assert scored and all(s["class_names"] == ["cat", "dog", "emu"] for s in scored)
    assert list((tmp_path / "pred").glob("*.png"))  # the confusion matrix drew with three named axes


def test_num_classes_overrides_and_must_cover_the_data(tmp_path, capsys):
    data = grey_folder(tmp_path / "d", ["a", "b", "c"])
    base = ["train", "--model", "lenet", "--train", str(data), "--gray", "--iters", "1", "--batch-size", "8", "-q",
            "--backend", "numpy", "--no-plots"]
    assert main(base + ["--out", str(tmp_path / "o5"), "--num-classes", "5"]) == 0
    assert outputs_of(snapshot_in(tmp_path / "o5"), "ip2") == 5
    assert main(base + ["--out", str(tmp_path / "o2"), "--num-classes", "2"]) == 1
    assert "--num-classes 2 is fewer than the 3 classes" in capsys.readouterr().err


def test_integer_labels_without_names_count_the_largest_label(tmp_path):
    data = grey_folder(tmp_path / "img", ["x"], per_class=8)
    # a list file with labels 0 and 6: seven classes; built into an LMDB (no labels.txt): the same count
    lines = [f"x/{k}.png {0 if k % 2 else 6}" for k in range(8)]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    stream = Stream(source=str(tmp_path / "list.txt"), root_folder=f"{data}/", is_color=False, batch_size=4)
    report = train("lenet", stream, None, {"max_iter": 1, "display": 0}, tmp_path / "o1", plots=False,
                   backend="numpy")
    assert outputs_of(npz(report), "ip2") == 7
    code, _, err = cli_output(["build-lmdb", tmp_path / "list.txt", tmp_path / "db", "--root", f"{data}/", "--gray",
                               "-q", "--workers", "0"])
    assert code == 0, err and not (tmp_path / "db" / "labels.txt").exists()
    report = train("lenet", Stream(source=str(tmp_path / "db"), batch_size=4), None, {"max_iter": 1, "display": 0},
                   tmp_path / "o2", plots=False, backend="numpy")
    assert outputs_of(npz(report), "ip2") == 7
    # Otto MLP on a CSV with three classes
    header = ",".join(["id"] + [f"feat_{k}" for k in range(1, 94)] + ["target"])
    rows = [",".join([str(i)] + [str((i + k) % 4) for k in range(93)] + [f"Class_{1 + i % 3}"]) for i in range(12)]
    (tmp_path / "t.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    report = train("otto_mlp", Stream(source=str(tmp_path / "t.csv"), batch_size=4), None,
                   {"max_iter": 1, "display": 0}, tmp_path / "o3", plots=False, backend="numpy")
    assert outputs_of(npz(report), "ip3") == 3


def pairs(root, values, n=4, size=(16, 16)):
    """Images and masks; mask k holds the class values in horizontal bands, a 255 border."""
    rng = np.random.default_rng(2)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(n):
        assert cv2.imwrite(str(root / "images" / f"{k}.png"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        mask = np.zeros(size, np.uint8)
        for j, v in enumerate(values):
            mask[j * size[0] // len(values):(j + 1) * size[0] // len(values)] = v
        assert cv2.imwrite(str(root / "masks" / f"{k}.png"), mask)
    return Stream(source=str(root / "images"), masks=str(root / "masks"), source_type="pairs", batch_size=2)


@pytest.mark.parametrize("values, classes", [((0, 1), 2), ((0, 1, 255), 2), (tuple(range(21)) + (255,), 21)])
def test_fcn_small_takes_the_mask_classes(tmp_path, values, classes):
    stream = pairs(tmp_path / "p", values, size=(44, 44))
    report = train("fcn_small", stream, stream, SEG_SOLVER, tmp_path / "o", plots=False, backend="numpy")
    assert outputs_of(npz(report), "score") == classes
    metrics = json.loads(next((tmp_path / "o").glob("*_metrics.json")).read_text())
    text = json.dumps(metrics)
    assert "NaN" not in text and "iou_2" not in report.test_metrics if classes == 2 else True
    assert sorted(k for k in report.test_metrics if k.startswith("iou_")) == \
        sorted(f"iou_{c}" for c in range(classes))


@pytest.mark.parametrize("model", ["fcn_small", "custom"])
def test_masks_stored_0_255_are_refused_before_training(tmp_path, model):
    stream = pairs(tmp_path / "p", (0, 255))
    target = "fcn_small"
    if model == "custom":
        from feedstock.trainer.seg.models import fcn_small

        target = fcn_small(width=4)
    with pytest.raises(ValueError, match=r"only 0 and 255.*--ignore-label.*remap") as info:
        train(target, stream, None, SEG_SOLVER, tmp_path / "o", plots=False, backend="numpy")
    assert "images" in str(info.value) or "training data" in str(info.value)
    assert not list((tmp_path / "o").glob("*.npz")) if (tmp_path / "o").exists() else True
    # with another ignore label, 255 is no void label and the mask set is not refused by the check
    from feedstock.trainer.checks import check_masks

    check_masks(np.array([0, 255]), 254, "x")
    check_masks(np.array([0, 1, 255]), 255, "x")  # a real class beside the void: fine
    with pytest.raises(ValueError, match="--ignore-label"):
        check_masks(np.array([255]), 255, "x")  # nothing but void is refused too


def test_the_cli_reports_the_0_255_mask_error(tmp_path, capsys):
    pairs(tmp_path / "p", (0, 255))
    code = main(["train", "--model", "fcn_small", "--train", str(tmp_path / "p" / "images"), "--masks",
                 str(tmp_path / "p" / "masks"), "--source-type", "pairs", "--iters", "1", "--batch-size", "2",
                 "--out", str(tmp_path / "o"), "-q", "--backend", "numpy"])
    err = capsys.readouterr().err
    assert code == 1 and "--ignore-label" in err and "mask[mask == 255] = 1" in err


def test_metrics_json_names_each_class():
    from feedstock.trainer.report import TrainReport

    report = TrainReport("fcn_small", "numpy", 1, 2, 0.5, 0.5, 0.4, 0.9, 1.0, 0.1, 0.0, 0.0, 1.0,
                         task="segmentation", test_metrics={"iou_0": 0.75, "iou_1": float("nan"), "loss": 0.4},
                         class_names=["background", "cell"])
    metrics = report.metrics()
    assert metrics["class_names"] == ["background", "cell"]
    assert metrics["test_iou_by_class"] == {"background": 0.75, "cell": None}
    assert "class_names" not in TrainReport("m", "numpy", 1, 2, 0.5, 0.5, None, None, 1.0, 0.1, 0.0, 0.0, 1.0).metrics()


def test_fcn_small_takes_a_label_lmdb_labels_txt(tmp_path):
    pairs(tmp_path / "p", (0, 1), size=(16, 16))
    code, _, err = cli_output(["build-lmdb", tmp_path / "p" / "images", tmp_path / "db", "--masks",
                               tmp_path / "p" / "masks", "-q", "--workers", "0"])
    assert code == 0, err
    lmdbs = sorted(p.name for p in (tmp_path / "db").iterdir() if (p / "data.mdb").exists())
    (tmp_path / "db" / "labels.txt").write_text("background\ncell\nnucleus\n")  # a class absent from these masks
    stream = Stream(source=str(tmp_path / "db" / lmdbs[0]), masks=str(tmp_path / "db" / lmdbs[1]),
                    source_type="pairs", batch_size=2)
    report = train("fcn_small", stream, None, SEG_SOLVER, tmp_path / "o", plots=False, backend="numpy")
    assert outputs_of(npz(report), "score") == 3
    assert report.class_names == ["background", "cell", "nucleus"]
    assert load_deployment(npz(report))[0].class_names == ("background", "cell", "nucleus")


def test_predict_on_a_folder_missing_a_class_keeps_the_training_codes(tmp_path, capsys):
    train_dir = grey_folder(tmp_path / "train", ["cat", "dog", "emu"])
    val = tmp_path / "val"
    for name in ("cat", "emu"):  # the same images as training: the labels must agree with the training codes
        (val / name).mkdir(parents=True)
        for p in (train_dir / name).glob("*.png"):
            (val / name / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    assert main(["train", "--model", "lenet", "--train", str(train_dir), "--gray", "--iters", "1", "--batch-size", "8",
                 "--out", str(out), "-q", "--backend", "numpy", "--no-plots"]) == 0
    from feedstock.trainer.predict import predict_source

    deploy, _ = load_deployment(snapshot_in(out))
    stream = Stream(source=str(val), is_color=False)
    source = predict_source(stream, deploy.class_names)
    assert {source.path(i).split("/")[-2]: int(source[i]["label"]) for i in range(len(source))} == {"cat": 0, "emu": 2}
