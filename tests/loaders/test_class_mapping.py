"""One class mapping per dataset for image folders and list files: a given class list decides the codes,
hidden and empty folders are never classes, and validation data keeps the training codes."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_build_helpers import cli_output, parse_datum_wire, read_db

from feedstock.loaders import ImageFolder, ListFile
from feedstock.stream import Stream
from feedstock.trainer.inputs import val_source


def image(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((4, 4, 3), value, np.uint8))


def folder(root, layout):
    """layout: {class: number of images}; image k of class c holds value 10 * index(c) + k."""
    for c, (name, count) in enumerate(layout.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            image(root / name / f"{name}{k}.png", 10 * c + k)
    return root


def labels_by_class(source):
    return {source.path(i).split("/")[-2]: int(source[i]["label"]) for i in range(len(source))}


def db_labels(db):
    return {k.decode().split("_", 1)[1].split("/")[0]: parse_datum_wire(v).get("label", 0) for k, v in read_db(db)}


def test_a_validation_folder_missing_a_class_keeps_the_training_codes(tmp_path):
    train = folder(tmp_path / "train", {"cat": 1, "dog": 1, "emu": 1})
    val = folder(tmp_path / "val", {"cat": 1, "emu": 1})
    assert labels_by_class(ImageFolder(train)) == {"cat": 0, "dog": 1, "emu": 2}
    assert labels_by_class(ImageFolder(val)) == {"cat": 0, "emu": 1}  # on its own: the codes it holds
    names = ImageFolder(train).classes
    held = ImageFolder(val, classes=names)
    assert labels_by_class(held) == {"cat": 0, "emu": 2} and held.classes == ["cat", "dog", "emu"]
    # the trainer's validation source and the stream key do the same
    assert labels_by_class(val_source(Stream(source=str(val)), names)) == {"cat": 0, "emu": 2}
    assert cli_output(["build-lmdb", train, tmp_path / "tdb", "-q", "--workers", "0"])[0] == 0
    streamed = Stream(source=str(val), classes=str(tmp_path / "tdb" / "labels.txt")).build_source()
    assert labels_by_class(streamed) == {"cat": 0, "emu": 2}


def test_build_lmdb_classes_for_folders_as_documented(tmp_path):
    train = folder(tmp_path / "train", {"cat": 1, "dog": 1, "emu": 1})
    val = folder(tmp_path / "val", {"cat": 1, "emu": 1})
    assert cli_output(["build-lmdb", train, tmp_path / "tdb", "-q", "--workers", "0"])[0] == 0
    code, _, err = cli_output(["build-lmdb", val, tmp_path / "vdb", "-q", "--workers", "0",
                               "--classes", tmp_path / "tdb" / "labels.txt"])
    assert code == 0, err
    assert db_labels(tmp_path / "vdb") == {"cat": 0, "emu": 2}
    assert (tmp_path / "vdb" / "labels.txt").read_text().split() == ["cat", "dog", "emu"]
    # a folder outside the list is named, nothing written
    folder(tmp_path / "other", {"cat": 1, "yak": 1})
    code, _, err = cli_output(["build-lmdb", tmp_path / "other", tmp_path / "odb", "-q", "--workers", "0",
                               "--classes", tmp_path / "tdb"])
    assert code == 1 and "'yak'" in err and "--classes" in err and not (tmp_path / "odb").exists()


def test_a_validation_lmdb_built_with_its_own_classes_is_refused(tmp_path):
    folder(tmp_path / "train", {"cat": 1, "dog": 1, "emu": 1})
    folder(tmp_path / "val", {"cat": 1, "emu": 1})
    for name in ("train", "val"):
        assert cli_output(["build-lmdb", tmp_path / name, tmp_path / f"{name}db", "-q", "--workers", "0"])[0] == 0
    with pytest.raises(ValueError, match=r"valdb.*\['cat', 'emu'\].*--classes"):
        val_source(Stream(source=str(tmp_path / "valdb")), ["cat", "dog", "emu"])
    assert len(val_source(Stream(source=str(tmp_path / "traindb")), ["cat", "dog", "emu"])) == 3


@pytest.mark.parametrize("hidden", [".ipynb_checkpoints", ".git", ".a"])
def test_hidden_and_empty_folders_are_never_classes(tmp_path, hidden):
    root = folder(tmp_path / "d", {"cat": 2, "dog": 1})
    image(root / hidden / "x.png")  # sorts before every class: would become class 0
    (root / "empty").mkdir()  # between cat and dog: would shift dog to 2
    (root / "only_sub" / "deeper").mkdir(parents=True)
    image(root / "cat" / ".ipynb_checkpoints" / "cat0-checkpoint.png")  # nested hidden folder: not an image
    image(root / "dog" / "._dog0.png")  # macOS resource fork
    source = ImageFolder(root)
    assert source.classes == ["cat", "dog"]
    assert sorted(source.path(i)[len(str(root)) + 1:] for i in range(len(source))) == \
        ["cat/cat0.png", "cat/cat1.png", "dog/dog0.png"]
    assert labels_by_class(source) == {"cat": 0, "dog": 1}
    assert cli_output(["build-lmdb", root, tmp_path / "db", "-q", "--workers", "0"])[0] == 0
    assert (tmp_path / "db" / "labels.txt").read_text().split() == ["cat", "dog"]
    assert [k.decode() for k, _ in read_db(tmp_path / "db")] == \
        ["00000000_cat/cat0.png", "00000001_cat/cat1.png", "00000002_dog/dog0.png"]


def test_a_folder_with_only_hidden_or_empty_subfolders_is_an_error(tmp_path):
    image(tmp_path / "d" / ".hidden" / "x.png")
    (tmp_path / "d" / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subfolders holding images"):
        ImageFolder(tmp_path / "d")


def test_list_files_take_classes_by_list_or_labels_txt(tmp_path):
    folder(tmp_path / "img", {"cat": 1, "emu": 1})
    (tmp_path / "list.txt").write_text("cat/cat0.png 0\nemu/emu0.png 2\n")
    plain = ListFile(tmp_path / "list.txt", root=f"{tmp_path}/img/")
    assert plain.classes is None and [int(plain[i]["label"]) for i in range(2)] == [0, 2]
    (tmp_path / "labels.txt").write_text("cat\ndog\nemu\n")
    for classes in (["cat", "dog", "emu"], tmp_path / "labels.txt", str(tmp_path)):
        named = ListFile(tmp_path / "list.txt", root=f"{tmp_path}/img/", classes=classes)
        assert named.classes == ["cat", "dog", "emu"] and [int(named[i]["label"]) for i in range(2)] == [0, 2]
    with pytest.raises(ValueError, match=r"list.txt: 'emu/emu0.png' has label 2, outside the 2 classes"):
        ListFile(tmp_path / "list.txt", root=f"{tmp_path}/img/", classes=["cat", "dog"])
    # the stream key and the build take them too; the build keeps the names in labels.txt
    streamed = Stream(source=str(tmp_path / "list.txt"), root_folder=f"{tmp_path}/img/",
                      classes=str(tmp_path / "labels.txt")).build_source()
    assert streamed.classes == ["cat", "dog", "emu"]
    code, _, err = cli_output(["build-lmdb", tmp_path / "list.txt", tmp_path / "db", "-q", "--workers", "0",
                               "--root", f"{tmp_path}/img/", "--classes", tmp_path / "labels.txt"])
    assert code == 0, err
    assert (tmp_path / "db" / "labels.txt").read_text().split() == ["cat", "dog", "emu"]
    code, _, err = cli_output(["build-lmdb", tmp_path / "list.txt", tmp_path / "db2", "-q", "--workers", "0",
                               "--root", f"{tmp_path}/img/", "--classes", tmp_path / "short.txt"])
    assert code == 1 and "short.txt" in err


def test_class_lists_are_checked(tmp_path):
    folder(tmp_path / "d", {"cat": 1})
    with pytest.raises(ValueError, match="duplicate class names"):
        ImageFolder(tmp_path / "d", classes=["cat", "cat"])
    with pytest.raises(ValueError, match="cannot read the class list"):
        ImageFolder(tmp_path / "d", classes=str(tmp_path / "missing.txt"))
