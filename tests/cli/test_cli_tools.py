"""verify, compute-mean and inspect subcommands, and --help of every dataset subcommand."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
from test_build_helpers import MY_COMMANDS, cli_output, read_db

from feedstock.caffe_pb import BlobProto, array_to_datum, encoded_datum
from feedstock.fixtures.synthetic import make_otto_csv, make_raw_lmdb
from feedstock.writers.lmdb_writer import LmdbWriter


def sha256_of(records) -> str:
    """The documented checksum, computed here from the raw LMDB records."""
    h = hashlib.sha256()
    for key, value in records:
        h.update(len(key).to_bytes(8, "little") + key + len(value).to_bytes(8, "little") + value)
    return h.hexdigest()


@pytest.mark.parametrize("command", ["build-lmdb", "merge-lmdb", "compute-mean", "inspect", "verify"])
def test_every_subcommand_has_help(command, capsys):
    assert len(MY_COMMANDS) == 5
    with pytest.raises(SystemExit) as exc:
        cli_output([command, "--help"])
    assert exc.value.code == 0


def test_verify_counts_and_checksums_a_good_database(tmp_path):
    images, labels = make_raw_lmdb(str(tmp_path / "db"), np.random.default_rng(0), 12, shape=(3, 4, 5), classes=4)
    code, out, err = cli_output(["verify", tmp_path / "db", "--num-classes", "4", "-q"])
    assert code == 0, err
    assert "12 records OK, shape 3x4x5 uint8" in out
    assert f"sha256 {sha256_of(read_db(tmp_path / 'db'))}" in out
    counts = np.bincount(labels, minlength=4)
    assert f"labels {labels.min()}..{labels.max()}" in out
    assert ", ".join(f"{k}: {counts[k]}" for k in range(4) if counts[k]) in out


def test_verify_names_every_bad_record(tmp_path):
    with LmdbWriter(str(tmp_path / "db")) as w:
        w.put(b"00000000_ok", array_to_datum(np.zeros((1, 2, 2), np.uint8), 0, encoded_false=True).SerializeToString())
        w.put(b"00000001_garbage", b"\xff\xff\xff")
        w.put(b"00000002_jpeg", encoded_datum(b"not a jpeg", 1).SerializeToString())
        w.put(b"00000003_shape", array_to_datum(np.zeros((1, 3, 2), np.uint8), 1, encoded_false=True).SerializeToString())
        w.put(b"00000004_label", array_to_datum(np.zeros((1, 2, 2), np.uint8), 9, encoded_false=True).SerializeToString())
    code, out, err = cli_output(["verify", tmp_path / "db", "--num-classes", "2", "-q"])
    assert code == 1
    bad = [line.split()[2].rstrip(":") for line in out.splitlines() if line.strip().startswith("bad record")]
    assert bad == ["00000001_garbage", "00000002_jpeg", "00000003_shape", "00000004_label"]


def test_verify_detects_a_changed_build(tmp_path):
    make_otto_csv(str(tmp_path / "t.csv"), np.random.default_rng(1), rows=10, features=3)
    assert cli_output(["build-lmdb", tmp_path / "t.csv", tmp_path / "db", "-q", "--workers", "0"])[0] == 0
    code, out, _ = cli_output(["verify", tmp_path / "db", "-q"])
    assert code == 0 and "matches build.json" in out
    import lmdb

    env = lmdb.open(str(tmp_path / "db"))
    with env.begin(write=True) as txn:
        key, value = next(iter(txn.cursor()))
        txn.put(key, value[:-1] + b"\x01")  # encoded=true instead of false: still parses
    env.close()
    code, out, _ = cli_output(["verify", tmp_path / "db", "-q"])
    assert code == 1 and "differs from build.json" in out


def test_compute_mean_is_compute_image_mean(tmp_path):
    images, _ = make_raw_lmdb(str(tmp_path / "db"), np.random.default_rng(2), 7, shape=(3, 4, 6))
    code, out, err = cli_output(["compute-mean", tmp_path / "db", tmp_path / "mean.binaryproto",
                                 "--npy", tmp_path / "mean.npy", "-q"])
    assert code == 0, err
    acc = np.zeros((3, 4, 6), np.float32)  # Caffe: one float32 running sum per element
    for img in images:
        acc += img.astype(np.float32)
    expected = acc / np.float32(len(images))
    blob = BlobProto.FromString((tmp_path / "mean.binaryproto").read_bytes())
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 4, 6) and not blob.HasField("shape")
    np.testing.assert_array_equal(np.asarray(blob.data, np.float32).reshape(3, 4, 6), expected)
    np.testing.assert_array_equal(np.load(tmp_path / "mean.npy"), expected)
    for c in range(3):
        assert f"mean_value channel [{c}]: {expected[c].astype(np.float64).mean():.6g}" in out
    assert out.count("mean_value: ") == 3


def test_compute_mean_decodes_encoded_datums_natively(tmp_path):
    rng = np.random.default_rng(3)
    grays = [rng.integers(0, 256, size=(5, 4), dtype=np.uint8) for _ in range(3)]
    with LmdbWriter(str(tmp_path / "db")) as w:
        for i, g in enumerate(grays):
            w.put_datum(i, f"{i}.png", encoded_datum(cv2.imencode(".png", g)[1].tobytes(), 0))
    code, out, err = cli_output(["compute-mean", tmp_path / "db", tmp_path / "m.binaryproto", "-q"])
    assert code == 0, err
    blob = BlobProto.FromString((tmp_path / "m.binaryproto").read_bytes())
    assert blob.channels == 1  # native: a grey PNG stays one channel
    np.testing.assert_allclose(np.asarray(blob.data).reshape(5, 4), np.mean(grays, axis=0), atol=1e-4)


def test_inspect_folder_prints_facts_and_draws_a_grid(tmp_path):
    rng = np.random.default_rng(4)
    for c, n in (("cat", 3), ("dog", 2)):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(tmp_path / "imgs" / c / f"{i}.png"), rng.integers(0, 256, (10, 20, 3), dtype=np.uint8))
    code, out, err = cli_output(["inspect", tmp_path / "imgs", "--grid", tmp_path / "g.png", "--samples", "4",
                                 "--resize", "8x8", "--crop", "6"])
    assert code == 0, err
    assert "records: 5" in out and "classes (2): cat, dog" in out
    assert "  0: 3" in out and "  1: 2" in out
    assert "in the samples: 3x6x6" in out  # after --resize and --crop
    grid = cv2.imread(str(tmp_path / "g.png"))
    assert grid.shape == (2 * (128 + 18 + 4) + 4, 2 * (128 + 4) + 4, 3)  # 4 tiles in a 2x2 sheet
    band = grid[4 + 128:4 + 128 + 18, 4:4 + 128]
    assert (band > 200).any()  # the label caption is drawn


def test_inspect_handles_grey_float_and_vector_data(tmp_path, shared_data):
    make_otto_csv(str(tmp_path / "t.csv"), np.random.default_rng(5), rows=9, features=93)
    code, out, err = cli_output(["inspect", tmp_path / "t.csv", "--grid", tmp_path / "csv.png"])
    assert code == 0, err
    assert "records: 9" in out
    assert cv2.imread(str(tmp_path / "csv.png")) is not None
    h5 = shared_data / "caffe-hdf5" / "sample_data.h5"
    code, out, err = cli_output(["inspect", h5, "--grid", tmp_path / "h5.png", "--samples", "4"])
    assert code == 0, err
    assert "labels: 10 distinct, 1..10" in out
    grid = cv2.imread(str(tmp_path / "h5.png"))
    assert grid[4:132, 4:132].max() == 255 and grid[4:132, 4:132].min() == 0  # float data normalised
