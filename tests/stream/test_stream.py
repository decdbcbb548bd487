"""The one stream definition: three forms give one Stream and the same batches; errors name key and form."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from feedstock.caffe_params import data_layer_params
from feedstock.caffe_pb import array_to_datum
from feedstock.stream import (
    Stream,
    add_stream_arguments,
    parse_param_str,
    stream_from_args,
    stream_from_mapping,
    stream_from_yaml,
)
from feedstock.transforms import CaffeTransform, Occlude, Scale
from feedstock.writers import LmdbWriter


@pytest.fixture(scope="module")
def digits_lmdb(tmp_path_factory):
    """24 raw uint8 Datums of (1, 8, 8) with known pixels (value = 10 * index + row)."""
    path = str(tmp_path_factory.mktemp("stream") / "digits_lmdb")
    with LmdbWriter(path) as w:
        for i in range(24):
            img = (np.arange(8, dtype=np.uint8)[:, None] + 10 * i).repeat(8, axis=1)[None]
            w.put(f"{i:08d}", array_to_datum(img, label=i % 3).SerializeToString())
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_stream_arguments(p)
    return p


SETTINGS = {"batch_size": 5, "crop_size": 6, "mirror": True, "mean_value": [100.0], "to_range": [-1.0, 1.0],
            "occlude": True, "shuffle": True, "seed": 7, "workers": 0}
FLAGS = ["--batch-size", "5", "--crop-size", "6", "--mirror", "--mean-value", "100", "--to-range=-1,1",
         "--occlude", "--shuffle", "--seed", "7", "--workers", "0"]


def _batches(stream: Stream, phase: str = "train", n: int = 3):
    with stream.build_loader(phase, copy=True) as loader:
        return [b for _, b in zip(range(n), loader)]


def test_flags_param_str_and_yaml_give_one_stream_and_the_same_batches(digits_lmdb, tmp_path):
    from_flags = stream_from_args(_parser().parse_args([digits_lmdb, *FLAGS]))
    from_param = data_layer_params(parse_param_str(json.dumps({"source": digits_lmdb, **SETTINGS}))).stream
    yaml_file = tmp_path / "stream.yaml"
    yaml_file.write_text(f"source: {digits_lmdb}\n" + "".join(f"{k}: {json.dumps(v)}\n" for k, v in SETTINGS.items()))
    from_yaml = stream_from_yaml(yaml_file)
    from_config = stream_from_args(_parser().parse_args([digits_lmdb, "--config", str(yaml_file)]))
    assert from_flags == from_param == from_yaml == from_config
    want = _batches(from_flags)
    for other in (from_param, from_yaml):
        for a, b in zip(want, _batches(other)):
            np.testing.assert_array_equal(a["data"], b["data"])
            np.testing.assert_array_equal(a["label"], b["label"])


def test_precedence_defaults_then_config_then_flags(tmp_path):
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text("batch_size: 8\nshuffle: false\ncrop_size: 4\n")
    args = _parser().parse_args(["src", "--config", str(yaml_file), "--crop-size", "2"])
    s = stream_from_args(args, defaults={"shuffle": True, "batch_size": 16, "seed": 0})
    assert (s.batch_size, s.shuffle, s.crop_size, s.seed, s.source) == (8, False, 2, 0, "src")
    s = stream_from_args(_parser().parse_args(["src"]), defaults={"shuffle": True})
    assert s.shuffle and s.batch_size == 64


def test_transforms_of_each_phase(digits_lmdb):
    s = stream_from_mapping({"source": digits_lmdb, **SETTINGS})
    train = s.build_transforms("train")
    assert [type(t) for t in train] == [CaffeTransform, Scale, Occlude]
    test = s.build_transforms("TEST")
    assert [type(t) for t in test] == [CaffeTransform, Scale]  # no occlusion in TEST
    batch = _batches(s, "test", 1)[0]["data"]
    # TEST: centre crop (offset 1 of 8 -> 6), no mirror: pixel = (10 * i + row - 100) / 127.5
    order_free = np.sort(batch[:, 0, :, 0], axis=0)  # every column is the same ramp
    rows = np.arange(1, 7, dtype=np.float32)
    assert np.allclose(batch[0, 0, :, 0] - batch[0, 0, 0, 0], (rows - 1) / np.float32(127.5), atol=1e-6)
    assert order_free.shape == (5, 6)


def test_to_range_without_mean_maps_0_255_onto_the_range(digits_lmdb):
    s = Stream(source=digits_lmdb, to_range=(-1.0, 1.0), batch_size=24, workers=0)
    data = _batches(s, "test", 1)[0]["data"]
    raw = _batches(Stream(source=digits_lmdb, batch_size=24, workers=0), "test", 1)[0]["data"]
    np.testing.assert_allclose(data, raw / np.float32(127.5) - 1, atol=1e-6)


@pytest.mark.parametrize("mapping, match", [
    ({"batch_size": 0}, "param_str key 'batch_size'=0 must be >= 1"),
    ({"scale": float("nan")}, "param_str key 'scale' must be a finite number"),
    ({"scale": float("inf")}, "'scale' must be a finite number"),
    ({"mean_value": [1.0, float("-inf")]}, "'mean_value' must be a number or a list of finite numbers"),
    ({"max_bad_fraction": float("nan")}, "'max_bad_fraction' must be a finite number"),
    ({"to_range": [1, 1]}, "'to_range'.*low != high"),
    ({"to_range": [-1, 1], "scale": 0.5}, "'to_range'.*mutually exclusive"),
    ({"workers": "many"}, "'workers' must be an int >= 0 or 'auto'"),
    ({"scales": [0.5, 1], "source_type": "lmdb"}, "'scales' applies to image \\+ mask pairs only"),
    ({"ignore_label": 300}, "'ignore_label'=300 must fit a uint8 mask"),
    ({"seed": 2**63}, "'seed'=9223372036854775808 must be an integer in \\[0, 2\\*\\*63\\)"),
])
def test_bad_values_name_the_key_and_the_form(mapping, match):
    with pytest.raises(ValueError, match=match):
        stream_from_mapping({"source": "x", **mapping})


def test_json_nan_and_infinity_in_a_param_str_are_refused():
    for text in ('{"source": "x", "batch_size": 2, "scale": NaN}', '{"source": "x", "batch_size": 2, "scale": Infinity}',
                 "{source: x, batch_size: 2, scale: .inf}"):
        with pytest.raises(ValueError, match="'scale' must be a finite number"):
            data_layer_params(parse_param_str(text))


def test_errors_do_not_echo_a_huge_input():
    huge = "{'source': '" + "x" * 200_000 + "', 'batch_size': [1]}"
    with pytest.raises(ValueError) as err:
        data_layer_params(parse_param_str(huge))
    assert len(str(err.value)) < 2000
    with pytest.raises(ValueError) as err:
        parse_param_str("[" + "1, " * 100_000 + "]")
    assert len(str(err.value)) < 500
    with pytest.raises(ValueError) as err:
        stream_from_mapping({"k" * 100_000: 1})
    assert len(str(err.value)) < 2000


def test_flag_and_yaml_errors_name_their_form(tmp_path):
    with pytest.raises(ValueError, match="^--batch-size=0 must be >= 1"):
        stream_from_args(_parser().parse_args(["src", "--batch-size", "0"]))
    with pytest.raises(ValueError, match="^--new-height=4 and --new-width=0 must be set together"):
        stream_from_args(_parser().parse_args(["src", "--new-height", "4"]))
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: -3\n")
    with pytest.raises(ValueError, match=f"^{bad} key 'batch_size'=-3 must be >= 1"):
        stream_from_yaml(bad)
    bad.write_text("crop_sise: 3\n")
    with pytest.raises(ValueError, match="unknown keys \\['crop_sise'\\]"):
        stream_from_yaml(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="holds a mapping"):
        stream_from_yaml(bad)


def test_fingerprint_differs_exactly_where_settings_do():
    a = Stream(source="/data/a/train_lmdb", crop_size=4, seed=1)
    assert a.fingerprint() == Stream(source="/mnt/x/train_lmdb", crop_size=4, seed=2).fingerprint()
    for change in ({"crop_size": 5}, {"scale": 0.5}, {"mean_value": (1.0,)}, {"source": "/data/a/val_lmdb"},
                   {"mirror": True}, {"batch_size": 3}, {"shuffle": True}):
        other = a.replace(**change).fingerprint()
        assert [k for k in other if other[k] != a.fingerprint()[k]] == list(change)
    json.dumps(a.fingerprint())


def test_csv_rows_need_no_transform_and_take_caffe_keys_as_blobs(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("id,feat_1,feat_2,target\n1,3,4,Class_1\n2,5,6,Class_2\n")
    plain = Stream(source=str(csv), batch_size=2, workers=0)
    assert plain.build_transforms("train") == []
    batch = _batches(plain, "test", 1)[0]
    np.testing.assert_array_equal(batch["data"], [[3, 4], [5, 6]])
    scaled = plain.replace(scale=0.5)
    batch = _batches(scaled, "test", 1)[0]
    np.testing.assert_array_equal(batch["data"], np.array([[3, 4], [5, 6]], np.float32).reshape(2, 2, 1, 1) * 0.5)


def test_masks_or_scales_make_an_auto_source_a_pairs_source():
    assert Stream(source="images", masks="masks").kind() == "pairs"
    assert Stream(source="images", scales=(0.5, 1.0)).kind() == "pairs"


def test_inspect_reads_through_the_stream_flags(digits_lmdb):
    import subprocess
    import sys

    def inspect(*extra):
        r = subprocess.run([sys.executable, "-m", "feedstock.cli.main", "inspect", digits_lmdb, *extra],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert "in the samples: 1x8x8" in inspect()
    assert "in the samples: 1x6x6" in inspect("--crop-size", "6", "--mean-value", "5")
    with pytest.raises(AssertionError, match="--crop-size=-1 must be >= 0"):
        inspect("--crop-size", "-1")


def test_csv_class_codes_follow_the_given_class_list_and_bad_rows_skip(tmp_path):
    (tmp_path / "labels.txt").write_text("Class_1\nClass_2\nClass_3\n")
    val = tmp_path / "val.csv"
    val.write_text("id,feat_1,target\n1,3,Class_3\n2,x,Class_2\n3,5,Class_2\n")
    s = Stream(source=str(val), classes=str(tmp_path / "labels.txt"), on_error="skip", batch_size=2, workers=0)
    batch = _batches(s, "test", 1)[0]
    np.testing.assert_array_equal(batch["label"], [2, 1])  # Class_3 -> 2 though Class_1 is absent
    np.testing.assert_array_equal(batch["data"], [[3], [5]])  # the bad cell's row is skipped
    with pytest.raises(ValueError, match="val.csv:3"):
        Stream(source=str(val), batch_size=2, workers=0).build_source()


def test_a_stream_without_transform_keys_hands_records_over_as_stored(digits_lmdb):
    s = Stream(source=digits_lmdb, batch_size=4, workers=0)
    assert s.build_transforms("train") == []
    batch = _batches(s, "test", 1)[0]
    assert batch["data"].dtype == np.uint8  # 4x fewer bytes than the float a no-op transform would give
    np.testing.assert_array_equal(batch["data"][1, 0, :, 0], np.arange(8) + 10)


def test_a_new_source_kind_is_one_registry_entry_and_its_module(tmp_path, no_leaks):
    from kind_npz import NpzRows, open_npz

    from feedstock.stream import StreamKeyError
    from feedstock.stream.kinds import SourceKind, register, source_types, unregister

    data = np.arange(10 * 3 * 2 * 2, dtype=np.uint8).reshape(10, 3, 2, 2)
    labels = np.arange(10) % 4
    path = str(tmp_path / "rows.npz")
    np.savez(path, data=data, label=labels)
    with pytest.raises(ValueError, match="cannot tell the format"):
        Stream(source=path).build_loader()
    with pytest.raises(StreamKeyError, match="'source_type'='npz' must be one of"):
        Stream(source=path, source_type="npz")
    register(SourceKind("npz", open_npz, lambda p: p.endswith(".npz")))
    try:
        assert "npz" in source_types()
        with pytest.raises(ValueError, match="registered already"):
            register(SourceKind("npz", open_npz))
        for stream in (Stream(source=path, batch_size=4, scale=0.5, workers=2),  # guessed from the path
                       Stream(source=path, source_type="npz", batch_size=4, scale=0.5, workers=0)):
            assert stream.kind() == "npz" and isinstance(stream.build_source(), NpzRows)
            with stream.build_loader("TEST") as loader:
                batches = [{k: v.copy() for k, v in b.items()} for b in loader]
            # in order, the short last batch kept, Caffe's scale applied to the rows
            np.testing.assert_array_equal(np.concatenate([b["data"] for b in batches]), data * np.float32(0.5))
            assert np.concatenate([b["label"] for b in batches]).tolist() == labels.tolist()
            assert [len(b["label"]) for b in batches] == [4, 4, 2]
        with pytest.raises(StreamKeyError, match="new_height"):  # not an image kind: no resize
            Stream(source=path, new_height=4, new_width=4).build_loader()
    finally:
        unregister("npz")
    assert "npz" not in source_types()


def test_a_registered_kind_is_reached_by_open_source_too(tmp_path):
    from kind_npz import NpzRows, open_npz

    from feedstock.loaders import guess_kind, open_source
    from feedstock.stream.kinds import SourceKind, register, unregister

    data = np.arange(5 * 2, dtype=np.uint8).reshape(5, 2)
    path = str(tmp_path / "rows.npz")
    np.savez(path, data=data, label=np.arange(5) % 2)
    with pytest.raises(ValueError, match="cannot tell the format"):
        open_source(path)
    register(SourceKind("npz", open_npz, lambda p: p.endswith(".npz")))
    try:
        assert guess_kind(path) == "npz"
        source = open_source(path)
        assert isinstance(source, NpzRows) and len(source) == 5
        np.testing.assert_array_equal(source[3]["data"], data[3])
        assert int(source[3]["label"]) == 1
        with pytest.raises(TypeError, match="not \\['colour'\\]"):  # a key no stream has
            open_source(path, colour=False)
        (tmp_path / "classes.npz" / "cat").mkdir(parents=True)
        assert guess_kind(str(tmp_path / "classes.npz")) == "folder"  # the built-in kinds still come first
    finally:
        unregister("npz")
    with pytest.raises(ValueError, match="cannot tell the format"):
        open_source(path)  # gone with its registry entry
