"""--encoded checks what a reader will decode: files kept byte for byte must give the dataset's channels in
8 bits (grayscale, alpha, 16-bit files are named and skipped), and --reencode converts them instead."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_build_helpers import cli_output, parse_datum_wire, read_db

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


def test_files_a_reader_would_reject_are_named_not_kept(tmp_path):
    odd_folder(tmp_path / "S")
    code, out, err = run(tmp_path / "S", tmp_path / "db", "--encoded")
    assert code == 0, err
    keys = [k.decode() for k, _ in read_db(tmp_path / "db")]
    assert keys == ["00000000_a/c0.png", "00000001_a/c1.png"]
    skipped = [line.split("\t") for line in (tmp_path / "db" / "skipped.txt").read_text().splitlines()]
    assert sorted(s[2] for s in skipped) == ODD
    reasons = {s[2]: s[3] for s in skipped}
    assert "grayscale file (1 channels; the dataset has 3)" in reasons["b/gray.png"]
    assert "16-bit samples" in reasons["b/deep.png"] and "BGRA" in reasons["b/alpha.png"]
    assert all("--reencode" in r for r in reasons.values())
    assert "5 of them" in out and "--reencode" in out
    assert cli_output(["verify", tmp_path / "db", "-q"])[0] == 0  # what was written, a reader takes
    code, _, err = run(tmp_path / "S", tmp_path / "strict", "--encoded", "--strict")
    assert code == 1 and "b/alpha.png" in err and "--reencode" in err


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


def test_gray_builds_check_colour_files_too(tmp_path):
    odd_folder(tmp_path / "S")
    code, out, _ = run(tmp_path / "S", tmp_path / "db", "--encoded", "--gray")
    assert code == 0
    kept = [k.decode().split("_", 1)[1] for k, _ in read_db(tmp_path / "db")]
    assert kept == ["b/gray.jpg", "b/gray.png"]  # only files that decode to one 8-bit channel
    code, _, _ = run(tmp_path / "S", tmp_path / "re", "--encoded", "--gray", "--reencode")
    source = CaffeLmdb(tmp_path / "re")
    assert len(source) == 7 and {source[i]["data"].shape for i in range(7)} == {(1, 6, 5)}


@pytest.mark.parametrize("args, message", [(["--reencode"], "applies to encoded builds"),
                                           (["--encoded", "--reencode", "--resize", "4x4"], None)])
def test_reencode_needs_an_encoded_build(tmp_path, args, message):
    odd_folder(tmp_path / "S")
    code, _, err = run(tmp_path / "S", tmp_path / "db", *args)
    if message:
        assert code == 1 and message in err
    else:  # resized records are re-encoded anyway: every one is 3 x 4 x 4
        assert code == 0 and {CaffeLmdb(tmp_path / "db")[i]["data"].shape for i in range(7)} == {(3, 4, 4)}
