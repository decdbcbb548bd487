"""Segmentation predict writes its masks only inside --out, named by record key, for absolute and
relative data paths of every pairs source kind; OUT is made, replaced only when it is predict's own."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_trainer_fcn_predict import _pairs

from feedstock.cli.main import main
from feedstock.outputs import MARKER
from feedstock.stream import Stream
from feedstock.trainer import train
from feedstock.trainer.seg.models import fcn_small


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    images, masks = _pairs(root)
    stream = Stream(source=str(images), masks=str(masks), source_type="pairs", crop_size=16, batch_size=4,
                    workers=0, seed=0)
    report = train(fcn_small(num_classes=3, width=4, input_shape=(3, 16, 16)), stream, None,
                   {"base_lr": 0.05, "max_iter": 2, "display": 0}, root / "out", backend="numpy", plots=False)
    assert main(["build-lmdb", str(images), str(root / "db"), "--masks", str(masks), "-q", "--workers", "0"]) == 0
    return root, next(f for f in report.files if f.endswith(".npz"))


def files_under(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", ["lmdb", "folder"])
@pytest.mark.parametrize("spelling", ["absolute", "relative"])
def test_masks_land_inside_out_by_record_key(seg, tmp_path, monkeypatch, kind, spelling):
    root, snap = seg
    data, masks = ((root / "db/images_lmdb", root / "db/labels_lmdb") if kind == "lmdb"
                   else (root / "images", root / "masks"))
    before = files_under(root)
    monkeypatch.chdir(tmp_path)
    if spelling == "relative":
        data, masks = Path(os.path.relpath(data)), Path(os.path.relpath(masks))
    assert main(["predict", snap, str(data), "--masks", str(masks), "--out", "pred/masks"]) == 0
    assert files_under(root) == before  # nothing written beside the data
    written = files_under(tmp_path / "pred/masks")
    pngs = sorted(w for w in written if w not in ("metrics.json", "confusion.png", "sheet.png", MARKER))
    if kind == "lmdb":  # the record keys of the build: %08d_<path below the images folder>
        assert pngs == ["00000000_p0.png", "00000001_p2.png", "00000002_sub/p1.png", "00000003_sub/p3.png"]
    else:
        assert pngs == ["p0.png", "p2.png", "sub/p1.png", "sub/p3.png"]
    assert {"metrics.json", "confusion.png"} <= written
    assert sorted(os.listdir(tmp_path)) == ["pred"]


def test_a_record_named_like_a_report_file_keeps_its_own_mask(tmp_path):
    from feedstock.trainer.seg.predict import mask_names

    class Keys:
        keys = ["sheet", "a/../../../etc/passwd", "/abs/x.jpg", "c:/w.png", "..", "sheet"]

        def __len__(self):
            return len(self.keys)

        def key(self, i):
            return self.keys[i]

    names = mask_names(Keys())
    assert names == ["sheet_00000000.png", "a/etc/passwd.png", "abs/x.png", "c_/w.png", "record.png",
                     "sheet_00000005.png"]
    assert all(not os.path.isabs(n) and ".." not in n.split("/") for n in names)


def test_predict_replaces_only_its_own_mask_folder(seg, tmp_path, capsys):
    root, snap = seg
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("x")
    assert main(["predict", snap, str(root / "images"), "--out", str(theirs)]) == 1
    assert "not a feedstock predict output" in capsys.readouterr().err
    assert files_under(theirs) == {"keep.txt"}
    mine = tmp_path / "mine"
    assert main(["predict", snap, str(root / "images"), "--out", str(mine)]) == 0
    assert "no masks given" in capsys.readouterr().out
    assert main(["predict", snap, str(root / "images"), "--masks", str(root / "masks"), "--out", str(mine)]) == 0
    assert "metrics.json" in files_under(mine) and sorted(os.listdir(tmp_path)) == ["mine", "theirs"]
