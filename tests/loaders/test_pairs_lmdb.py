"""build-lmdb for pairs (image + label LMDBs, same keys), verify key for key, and a Loader over the two."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from pairs_helpers import PAD_VALUE, check_batch, run_cli, write_threshold_pairs

from feedstock.caffe_pb import Datum, array_to_datum
from feedstock.loaders.caffe_lmdb import read_keys, release_env
from feedstock.loaders.lmdb_pairs import LmdbPairs
from feedstock.stream import Stream
from feedstock.writers.build.output import iter_db
from feedstock.writers.lmdb_writer import LmdbWriter

SIZES = [(40, 52), (64, 48), (30, 30), (57, 71), (48, 48)]


def _release(*paths) -> None:
    for p in paths:
        release_env(str(p))


@pytest.fixture
def built(tmp_path):
    images, masks, written = write_threshold_pairs(tmp_path / "src", SIZES)
    out = tmp_path / "db"
    code, stdout, err = run_cli("build-lmdb", images, out, "--masks", masks, "-q")
    assert code == 0, err
    yield out, written
    _release(out / "images_lmdb", out / "labels_lmdb")


def test_two_databases_same_keys_raw_datums(built):
    out, written = built
    img_db, lab_db = str(out / "images_lmdb"), str(out / "labels_lmdb")
    keys = list(read_keys(img_db))
    assert keys == [f"{i:08d}_p{i:03d}.png" for i in range(len(SIZES))] == list(read_keys(lab_db))
    for (_, value), (_, mask) in zip(iter_db(lab_db), written):
        datum = Datum.FromString(value)
        assert (datum.channels, datum.height, datum.width, datum.encoded) == (1, *mask.shape, False)
        np.testing.assert_array_equal(np.frombuffer(datum.data, np.uint8).reshape(mask.shape), mask)
    source = LmdbPairs(img_db, lab_db)
    for i, (image, mask) in enumerate(written):
        np.testing.assert_array_equal(source[i]["data"], image.transpose(2, 0, 1))
        np.testing.assert_array_equal(source[i]["mask"][0], mask)
    assert source.image_hw(3) == (57, 71)


def test_verify_passes_and_loader_yields_aligned_pairs(built):
    out, _ = built
    code, stdout, _ = run_cli("verify", out, "-q", "--num-classes", 4)
    assert code == 0 and f"{len(SIZES)} pairs OK (keys equal, sizes match)" in stdout
    assert "class pixels: 0:" in stdout
    stream = Stream(source=str(out / "images_lmdb"), masks=str(out / "labels_lmdb"), source_type="pairs",
                    scales=(0.6, 1, 1.4), crop_size=40, mirror=True, pad_value=PAD_VALUE, batch_size=5,
                    shuffle=True, seed=2)
    runs = []
    for workers in (0, 2):
        with stream.build_loader("train", workers=workers) as loader:
            runs.append([{k: np.array(v) for k, v in b.items()} for _ in range(3) for b in loader])
    padded = 0
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a["data"], b["data"])
        np.testing.assert_array_equal(a["label"], b["label"])
        padded += check_batch(a)[1]
    assert padded > 0


def test_verify_names_misaligned_keys_and_sizes(built, tmp_path):
    out, written = built
    bad = tmp_path / "bad_labels"
    with LmdbWriter(bad) as w:  # the same keys but the last one's mask is 1 row short
        for i, (_, mask) in enumerate(written):
            m = mask[:-1] if i == 4 else mask
            w.put_datum(i, f"p{i:03d}.png", array_to_datum(m[None], 0))
    code, stdout, _ = run_cli("verify", out / "images_lmdb", "--masks", bad, "-q")
    assert code == 1 and "1 BAD" in stdout and "00000004_p004.png" in stdout and "47x48" in stdout
    _release(bad)
    short = tmp_path / "short_labels"
    with LmdbWriter(short) as w:
        for i, (_, mask) in enumerate(written[:3]):
            w.put_datum(i, f"p{i:03d}.png", array_to_datum(mask[None], 0))
        w.put_datum(3, "other.png", array_to_datum(written[3][1][None], 0))
    code, stdout, _ = run_cli("verify", out / "images_lmdb", "--masks", short, "-q")
    assert code == 1 and "key #3 is '00000003_p003.png' in the images but '00000003_other.png'" in stdout
    with pytest.raises(ValueError, match="not aligned"):
        LmdbPairs(str(out / "images_lmdb"), str(short))
    _release(short)


def test_list_build_skips_bad_pairs_keeps_numbering(tmp_path):
    images, masks, written = write_threshold_pairs(tmp_path, SIZES[:3], spaces=True)
    cv2.imwrite(str(masks / "p 001.png"), np.zeros((3, 3), np.uint8))
    (tmp_path / "pairs.txt").write_text("".join(f"my images/p {i:03d}.png my masks/p {i:03d}.png\n"
                                                for i in range(3)))
    code, stdout, err = run_cli("build-lmdb", tmp_path / "pairs.txt", tmp_path / "db", "--kind", "pairs",
                             "--root", f"{tmp_path}/", "--encoded", "-q")
    assert code == 0, err
    assert "2 pairs" in stdout and "skipped 1" in stdout
    img_db = str(tmp_path / "db" / "images_lmdb")
    assert list(read_keys(img_db)) == ["00000000_my images/p 000.png", "00000002_my images/p 002.png"]
    assert "is 3x3 but the image is 64x48" in (tmp_path / "db" / "skipped.txt").read_text()
    source = LmdbPairs(img_db, str(tmp_path / "db" / "labels_lmdb"))
    assert Datum.FromString(next(iter_db(img_db))[1]).encoded  # the PNG file's bytes
    np.testing.assert_array_equal(source[1]["data"], written[2][0].transpose(2, 0, 1))
    np.testing.assert_array_equal(source[1]["mask"][0], written[2][1])
    _release(img_db, tmp_path / "db" / "labels_lmdb")
    code, _, err = run_cli("build-lmdb", tmp_path / "pairs.txt", tmp_path / "db2", "--kind", "pairs",
                        "--root", f"{tmp_path}/", "--strict", "-q")
    assert code == 1 and "p 001.png" in err
    assert not os.path.exists(tmp_path / "db2") and not os.path.exists(tmp_path / "db2.partial")


@pytest.mark.parametrize("flag", [["--val-fraction", "0.2"], ["--mean"], ["--engine", "ray"]])
def test_flags_a_pairs_build_does_not_take(tmp_path, flag):
    images, masks, _ = write_threshold_pairs(tmp_path, SIZES[:1])
    code, _, err = run_cli("build-lmdb", images, tmp_path / "db", "--masks", masks, "-q", *flag)
    assert code == 1 and flag[0] in err and "pairs" in err


@pytest.mark.parametrize("where", ["images", "masks", "parent"])
def test_an_output_that_is_or_holds_the_source_is_refused_before_force_deletes(tmp_path, where):
    images, masks, _ = write_threshold_pairs(tmp_path, SIZES[:2])
    out = {"images": images, "masks": masks, "parent": tmp_path}[where]
    code, _, err = run_cli("build-lmdb", images, out, "--masks", masks, "--force", "-q")
    assert code == 1 and "source" in err
    assert sorted(p.name for p in images.iterdir()) == ["p000.png", "p001.png"]
    assert sorted(p.name for p in masks.iterdir()) == ["p000.png", "p001.png"]


def test_worker_processes_write_the_same_bytes(tmp_path):
    images, masks, _ = write_threshold_pairs(tmp_path / "src", SIZES * 8)  # 40 pairs: several pool tasks
    cv2.imwrite(str(masks / "p007.png"), np.zeros((2, 2), np.uint8))  # one bad pair, skipped in both
    digests = []
    for workers in (0, 2):
        out = tmp_path / f"db{workers}"
        code, stdout, err = run_cli("build-lmdb", images, out, "--masks", masks, "--shuffle", "--seed", 3,
                                 "--workers", workers, "-q")
        assert code == 0 and "39 pairs" in stdout and "skipped 1" in stdout, err
        code, stdout, _ = run_cli("verify", out, "-q")
        assert code == 0
        digests.append([line for line in stdout.splitlines() if "sha256" in line])
        _release(out / "images_lmdb", out / "labels_lmdb")
    assert digests[0] == digests[1] and digests[0]
