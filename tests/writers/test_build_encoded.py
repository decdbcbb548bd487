"""--encoded keeps files byte for byte as convert_imageset does (grayscale, alpha, 16-bit ones too) and reports
the reader setting they need (force_color / force_gray); --reencode converts them instead."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from test_build_helpers import cli_output, parse_datum_wire, read_db

from feedstock.errors import RecordError
from feedstock.loaders import CaffeLmdb
from feedstock.pipeline.loader import Loader


def odd_folder(root):
    """class a: two colour PNGs; class b: grey, 16-bit colour, BGRA, 16-bit grey PNGs and a grey JPEG."""
    rng = np.random.default_rng(0)
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    files = {
        "a/c0.png": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
        "a/c1.png": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
        "b/gray.png": rng.integers(0, 256, (6, 5), dtype=np.uint8),
        "b/deep.png": rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16),
        "b/alpha.png": rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),
        "b/deepgray.png": rng.integers(0, 65536, (6, 5), dtype=np.uint16),
        "b/gray.jpg": rng.integers(0, 256, (6, 5), dtype=np.uint8),
    }
    for rel, img in files.items():
        assert cv2.imwrite(str(root / rel), img)
    return files


ODD = ["b/alpha.png", "b/deep.png", "b/deepgray.png", "b/gray.jpg", "b/gray.png"]


def run(*args):
    return cli_output(["build-lmdb", *args, "-q", "--workers", "0"])


def test_files_are_kept_byte_for_byte_as_caffe_and_reported_with_force_color(tmp_path, no_leaks):
    """convert_imageset --encoded reads with imread COLOR, so (channels == 3) == is_color always holds and every
    file whose extension matches is stored as it is: the key set is the listing's, 7 of 7."""
    files = odd_folder(tmp_path / "S")
    code, out, err = run(tmp_path / "S", tmp_path / "db", "--encoded", "--strict")
    assert code == 0, err
    records = read_db(tmp_path / "db")
    names = sorted(files)
    assert [k.decode() for k, _ in records] == [f"{i:08d}_{n}" for i, n in enumerate(names)]
    for (_key, value), name in zip(records, names):
        fields = parse_datum_wire(value)
        assert fields["data"] == (tmp_path / "S" / name).read_bytes() and fields["encoded"] == 1, name
        assert "channels" not in fields and "height" not in fields  # Caffe's encoded Datum: no C/H/W
    assert not (tmp_path / "db" / "skipped.txt").exists()
    assert "5 record(s)" in out and "force_color" in out and "--reencode" in out
    reader = json.loads((tmp_path / "db" / "build.json").read_text())["result"]["reader"]
    assert reader["force_color"] is True and reader["records"] == 5 and len(reader["examples"]) == 5
    # a reader told force_color gets the dataset's 3 channels in 8 bits, as Caffe's imdecode COLOR
    with Loader(CaffeLmdb(tmp_path / "db", mode="color"), batch_size=7, workers=0, shuffle=False) as loader:
        batch = {name: np.array(value) for name, value in next(iter(loader)).items()}
    assert batch["data"].shape == (7, 3, 6, 5) and batch["data"].dtype == np.uint8
    for k, name in enumerate(names):
        expected = cv2.imread(str(tmp_path / "S" / name), cv2.IMREAD_COLOR).transpose(2, 0, 1)
        np.testing.assert_array_equal(batch["data"][k], expected, err_msg=name)
    code, out, _ = cli_output(["verify", tmp_path / "db", "-q"])  # natively they differ: named, with the flag
    assert code == 1 and "--force-color" in out
    assert cli_output(["verify", tmp_path / "db", "-q", "--force-color"])[0] == 0


def test_the_stream_decodes_kept_grey_files_when_told(tmp_path):
    odd_folder(tmp_path / "S")
    assert run(tmp_path / "S", tmp_path / "db", "--encoded")[0] == 0
    from feedstock.stream import Stream

    source = Stream(source=str(tmp_path / "db"), force_color=True).build_source()
    assert {source[i]["data"].shape for i in range(len(source))} == {(3, 6, 5)}
    native = Stream(source=str(tmp_path / "db")).build_source()
    assert native[5]["data"].shape == (1, 6, 5)  # b/gray.jpg decoded as it is stored
    with pytest.raises(RecordError, match="16"):
        native[3]["data"]  # b/deep.png: 16-bit samples natively


def test_a_mean_over_kept_files_uses_what_force_color_reads(tmp_path):
    odd_folder(tmp_path / "S")
    code, _, err = run(tmp_path / "S", tmp_path / "db", "--encoded", "--mean")
    assert code == 0, err
    pixels = [cv2.imread(str(p), cv2.IMREAD_COLOR).astype(np.float64) for p in sorted((tmp_path / "S").rglob("*.*"))]
    expected = np.mean(pixels, axis=0).transpose(2, 0, 1)
    np.testing.assert_allclose(np.load(tmp_path / "db" / "mean.npy"), expected, rtol=0, atol=1e-4)


def test_reencode_stores_the_dataset_channels_in_8_bits(tmp_path, no_leaks):
    files = odd_folder(tmp_path / "S")
    code, _, err = run(tmp_path / "S", tmp_path / "db", "--encoded", "--reencode", "--mean")
    assert code == 0, err
    records = read_db(tmp_path / "db")
    assert len(records) == 7 and not (tmp_path / "db" / "skipped.txt").exists()
    names = [k.decode().split("_", 1)[1] for k, _ in records]
    for (_key, value), name in zip(records, names):
        payload = parse_datum_wire(value)["data"]
        if name.startswith("a/"):
            assert payload == (tmp_path / "S" / name).read_bytes()  # good files keep their bytes (Caffe)
            continue
        decoded = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)
        expected = cv2.imread(str(tmp_path / "S" / name), cv2.IMREAD_COLOR)  # Caffe's is_color read
        assert decoded.dtype == np.uint8 and decoded.shape == (6, 5, 3), name
        if name.endswith(".png"):
            np.testing.assert_array_equal(decoded, expected)  # PNG stays lossless
    assert cli_output(["verify", tmp_path / "db", "-q"])[0] == 0
    with Loader(CaffeLmdb(tmp_path / "db"), batch_size=7, workers=0, shuffle=False, drop_last=True) as loader:
        batch = {name: np.array(value) for name, value in next(iter(loader)).items()}
    assert batch["data"].shape == (7, 3, 6, 5) and batch["data"].dtype == np.uint8
    gray_png = cv2.cvtColor(files["b/gray.png"], cv2.COLOR_GRAY2BGR)
    assert np.array_equal(batch["data"][names.index("b/gray.png")], gray_png.transpose(2, 0, 1))


def test_gray_builds_keep_colour_files_and_ask_for_force_gray(tmp_path):
    odd_folder(tmp_path / "S")
    code, out, _ = run(tmp_path / "S", tmp_path / "db", "--encoded", "--gray")
    assert code == 0
    assert len(read_db(tmp_path / "db")) == 7  # convert_imageset --gray keeps every file too
    reader = json.loads((tmp_path / "db" / "build.json").read_text())["result"]["reader"]
    assert reader["force_gray"] is True and reader["records"] == 5  # all but the two 8-bit grey files
    assert "force_gray" in out
    source = CaffeLmdb(tmp_path / "db", mode="gray")
    assert {source[i]["data"].shape for i in range(7)} == {(1, 6, 5)}
    code, _, _ = run(tmp_path / "S", tmp_path / "re", "--encoded", "--gray", "--reencode")
    source = CaffeLmdb(tmp_path / "re")
    assert len(source) == 7 and {source[i]["data"].shape for i in range(7)} == {(1, 6, 5)}
    assert "reader" not in json.loads((tmp_path / "re" / "build.json").read_text())["result"]


@pytest.mark.parametrize("args, message", [(["--reencode"], "applies to encoded builds"),
                                           (["--encoded", "--reencode", "--resize", "4x4"], None)])
def test_reencode_needs_an_encoded_build(tmp_path, args, message):
    odd_folder(tmp_path / "S")
    code, _, err = run(tmp_path / "S", tmp_path / "db", *args)
    if message:
        assert code == 1 and message in err
    else:  # resized records are re-encoded anyway: every one is 3 x 4 x 4
        assert code == 0 and {CaffeLmdb(tmp_path / "db")[i]["data"].shape for i in range(7)} == {(3, 4, 4)}
