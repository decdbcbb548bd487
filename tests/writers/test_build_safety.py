"""build-lmdb never reads or deletes its own output: OUT, OUT.partial and OUT.parts inside the source are
not classes, and outputs that are, hold or hide the source are refused before anything is removed."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_build_helpers import cli_output, parse_datum_wire, read_db

from feedstock.fixtures.synthetic import make_image_folder, make_otto_csv
from feedstock.loaders import ImageFolder
from feedstock.writers.build.builder import BuildOptions, build_lmdb

CLASSES = ["cat", "dog", "fox"]


def source(root: Path, per_class: int = 2) -> Path:
    make_image_folder(str(root), np.random.default_rng(3), classes=CLASSES, per_class=per_class, size=(6, 5))
    return root


def build(*args) -> str:
    code, out, err = cli_output(["build-lmdb", *args, "--quiet", "--workers", "0"])
    assert code == 0, err
    return out


def refused(*args) -> str:
    code, _, err = cli_output(["build-lmdb", *args, "--quiet", "--workers", "0"])
    assert code == 1, "the build should have been refused"
    return err


def labelled_keys(db: Path) -> list:
    """(key, label) of every record: what a training run would see."""
    return [(k, parse_datum_wire(v)["label"]) for k, v in read_db(db)]


def expected_keys(root: Path) -> list:
    """Keys and labels of the source read on its own (a build outside the source)."""
    names = sorted(os.path.relpath(p, root) for p in root.rglob("*.png"))
    return [(f"{i:08d}_{n}".encode(), CLASSES.index(n.split("/")[0])) for i, n in enumerate(names)]


@pytest.mark.parametrize("inner", ["out_lmdb", "a/b/out_lmdb", "cat/sub/out_lmdb"])
def test_force_rebuild_inside_the_source_keeps_the_classes(tmp_path, inner):
    src = source(tmp_path / "S")
    expected = expected_keys(src)
    build(src, src / inner)
    build(src, src / inner, "--force")  # the first output now sits in the source it scans
    assert labelled_keys(src / inner) == expected
    assert (src / inner / "labels.txt").read_text() == "cat\ndog\nfox\n"
    build(src, src / inner, "--force", "--val-fraction", "0.5")  # OUT with train_lmdb/val_lmdb inside
    build(src, src / inner, "--force")
    assert labelled_keys(src / inner) == expected


def test_resume_inside_the_source_gives_the_clean_build(tmp_path):
    src = source(tmp_path / "S")
    (src / "dog" / "zz.png").write_bytes(b"not a png")
    assert refused(src, src / "a_out", "--strict")  # leaves S/a_out.partial (with build.json) behind
    assert (src / "a_out.partial" / "build.json").is_file()
    shutil.copyfile(src / "cat" / "000.png", src / "dog" / "zz.png")  # fixed: same names, same plan
    build(src, src / "a_out", "--resume")  # a_out.partial would sort first and shift every label
    build(src, tmp_path / "clean")
    assert read_db(src / "a_out") == read_db(tmp_path / "clean")
    assert labelled_keys(src / "a_out") == expected_keys(src)


def test_a_symlinked_output_inside_the_source_is_excluded(tmp_path):
    src = source(tmp_path / "S")
    expected = expected_keys(src)
    os.symlink(src, tmp_path / "via")  # the output path reaches the source through a link
    build(src, tmp_path / "via" / "a_out")
    build(src, tmp_path / "via" / "a_out", "--force")
    assert labelled_keys(src / "a_out") == expected
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", src / "a_link")  # the scan follows links into the output
    build(src, tmp_path / "elsewhere" / "db")
    build(src, tmp_path / "elsewhere" / "db", "--force")
    assert labelled_keys(tmp_path / "elsewhere" / "db") == expected


def test_old_outputs_and_work_folders_are_never_classes(tmp_path):
    src = source(tmp_path / "S")
    build(src, src / "old_lmdb")
    (src / "stale.partial").mkdir()
    build(src, src / "other_lmdb")  # a different output: old_lmdb (an LMDB) is no class either
    assert labelled_keys(src / "other_lmdb") == expected_keys(src)
    folder = ImageFolder(src)  # the loader skips databases too, and an empty folder is never a class
    assert folder.classes == ["cat", "dog", "fox"]


@pytest.mark.parametrize("where", ["same", "parent", "link"])
def test_an_output_that_is_or_holds_the_source_is_refused(tmp_path, where):
    src = source(tmp_path / "data" / "S")
    before = sorted(p.name for p in src.rglob("*"))
    out = {"same": src, "parent": tmp_path / "data", "link": tmp_path / "L"}[where]
    if where == "link":
        os.symlink(src, out)
    err = refused(src, out, "--force")
    assert ("is the source" if where != "parent" else "contains the source") in err
    assert sorted(p.name for p in src.rglob("*")) == before  # nothing deleted


def test_an_output_that_would_hide_source_images_is_refused(tmp_path):
    src = source(tmp_path / "S")
    err = refused(src, src / "cat", "--force")
    assert "holds 2 of its images" in err and "cat/000.png" in err
    assert sorted(os.listdir(src / "cat")) == ["000.png", "001.png"]
    with pytest.raises(ValueError, match="holds 2 of its images"):
        build_lmdb(str(src), str(src / "dog" / ".." / "fox"), BuildOptions(), force=True)
    image = src / "cat" / "001.png"
    before = image.read_bytes()
    assert "is a record of the source" in refused(src, image, "--force")  # an image file as the output
    (tmp_path / "list.txt").write_text("cat/001.png 0\n")
    assert "is a record of the source" in refused(tmp_path / "list.txt", image, "--root", f"{src}/", "--force")
    assert image.read_bytes() == before


def test_list_and_table_sources_never_read_from_the_output(tmp_path):
    src = source(tmp_path / "imgs")
    (tmp_path / "list.txt").write_text("cat/000.png 0\nout/x.png 1\n")
    (src / "out").mkdir()
    shutil.copyfile(src / "cat" / "000.png", src / "out" / "x.png")
    err = refused(tmp_path / "list.txt", src / "out", "--root", f"{src}/", "--force")
    assert "out/x.png" in err and "lies in the output" in err
    assert (src / "out" / "x.png").is_file()
    make_otto_csv(str(tmp_path / "t.csv"), np.random.default_rng(0), rows=5, features=3)
    before = (tmp_path / "t.csv").read_bytes()
    assert "is the source" in refused(tmp_path / "t.csv", tmp_path / "t.csv", "--force")
    assert (tmp_path / "t.csv").read_bytes() == before
