"""param_str parsing and validation of the Caffe layers (no pipeline needed)."""
from __future__ import annotations

import json

import pytest
from caffe_blobs import blobs

from feedstock.caffe_layer import DataLayer, OccludeLayer, default_tops
from feedstock.caffe_params import (
    DATA_KEYS,
    DataLayerParams,
    data_layer_params,
    occlude_layer_params,
    parse_param_str,
)
from feedstock.phase import parse_phase
from feedstock.stream import Stream

BRIEF = ("{'source': 'train_lmdb', 'batch_size': 64, 'crop_size': 227, 'mirror': True, "
         "'mean_file': 'mean.binaryproto', 'workers': 4}")
EXPECTED = {"source": "train_lmdb", "batch_size": 64, "crop_size": 227, "mirror": True,
            "mean_file": "mean.binaryproto", "workers": 4}


@pytest.mark.parametrize("text", [
    BRIEF,
    json.dumps(EXPECTED),
    "source: train_lmdb\nbatch_size: 64\ncrop_size: 227\nmirror: true\nmean_file: mean.binaryproto\nworkers: 4\n",
    "{source: train_lmdb, batch_size: 64, crop_size: 227, mirror: true, mean_file: mean.binaryproto, workers: 4}",
])
def test_dict_literal_json_and_yaml_parse_alike(text):
    assert parse_param_str(text) == EXPECTED


def test_brief_prototxt_param_str_validates():
    p = data_layer_params(parse_param_str(BRIEF))
    s = p.stream
    assert (s.source, s.batch_size, s.crop_size, s.mirror, s.mean_file, s.workers) == (
        "train_lmdb", 64, 227, True, "mean.binaryproto", 4)
    assert (s.scale, s.shuffle, s.mean_value, p.tops, s.prefetch) == (1.0, False, (), None, 4)
    assert s.changed() == {"source": "train_lmdb", "crop_size": 227, "mirror": True,
                           "mean_file": "mean.binaryproto", "workers": 4}
    assert DataLayerParams(stream=Stream(source="x", batch_size=2)).stream.changed() == {
        "source": "x", "batch_size": 2}


def test_empty_param_str_is_empty_dict_and_then_missing_keys():
    assert parse_param_str("") == {} and parse_param_str("  \n") == {}
    with pytest.raises(ValueError, match=r"missing keys \['source', 'batch_size'\].*valid keys: source, source_type"):
        data_layer_params({})


@pytest.mark.parametrize("text", [
    "__import__('os').system('x')",
    "{'source': open('/etc/passwd').read(), 'batch_size': 1}",
    "{'source': (lambda: 'x')(), 'batch_size': 1}",
])
def test_code_is_refused_with_a_clear_error(text):
    with pytest.raises(ValueError, match="contains code .* never evaluated"):
        parse_param_str(text)


def test_code_is_never_executed(tmp_path):
    target = tmp_path / "pwned"
    text = f"__import__('pathlib').Path({str(target)!r}).touch()"
    with pytest.raises(ValueError, match="contains code"):
        parse_param_str(text)
    layer = DataLayer()
    layer.param_str, layer.phase = "{'source': __import__('pathlib').Path(%r).touch()}" % str(target), 0
    with pytest.raises(ValueError, match="contains code"):
        layer.setup([], blobs(2))
    assert not target.exists()


@pytest.mark.parametrize("text", ["[1, 2]", "'train_lmdb'", "64", "- a\n- b\n"])
def test_non_dict_is_refused(text):
    with pytest.raises(ValueError, match="must be a dict"):
        parse_param_str(text)


def test_garbage_is_refused():
    with pytest.raises(ValueError, match="neither a Python dict literal, JSON nor YAML"):
        parse_param_str("{'source': 'a', batch_size: [}")


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ValueError) as err:
        data_layer_params({"source": "a", "batch_size": 2, "crop_sise": 3})
    text = str(err.value)
    assert "unknown keys ['crop_sise']" in text
    for key in DATA_KEYS:
        assert key in text


@pytest.mark.parametrize("mapping, match", [
    ({"batch_size": True}, "'batch_size' must be int"),
    ({"batch_size": "64"}, "'batch_size' must be int"),
    ({"batch_size": 0}, "'batch_size'=0 must be >= 1"),
    ({"mirror": 1}, "'mirror' must be bool"),
    ({"scale": "0.5"}, "'scale' must be a number"),
    ({"mean_value": "104"}, "'mean_value' must be a number"),
    ({"mean_value": [104, True]}, "'mean_value' must be a number"),
    ({"new_height": 32}, "must be set together"),
    ({"force_color": True, "force_gray": True}, "mutually exclusive"),
    ({"mean_file": "m.binaryproto", "mean_value": [1.0]}, "mutually exclusive"),
    ({"backend": "LEVELDB"}, "only LMDB"),
    ({"source_type": "tfrecord"}, "'source_type'='tfrecord' must be one of"),
    ({"source": ""}, "'source' must not be empty"),
    ({"tops": []}, "'tops' must be a non-empty list"),
    ({"tops": ["data", 3]}, "'tops' must be a non-empty list"),
    ({"workers": -1}, "'workers'=-1 must be >= 0"),
    ({"prefetch": 0}, "'prefetch'=0 must be >= 1"),
    ({"shard": "2/2"}, "'shard'=2/2 must have 0 <= i < n"),
    ({"seed": -1}, "'seed'=-1 must be an integer in"),
    ({"seed": 1.5}, "'seed' must be int"),
    ({"max_bad_fraction": 2}, "'max_bad_fraction'=2.0 must be in \\[0, 1\\]"),
    ({"max_bad_fraction": "x"}, "'max_bad_fraction' must be a number"),
])
def test_bad_values_name_the_key(mapping, match):
    with pytest.raises(ValueError, match=match):
        data_layer_params({"source": "a", "batch_size": 2, **mapping})


def test_normalised_values():
    p = data_layer_params({"source": "a", "batch_size": 2, "mean_value": 104, "scale": 1,
                           "tops": "data", "backend": "lmdb"})
    assert p.stream.mean_value == (104.0,) and isinstance(p.stream.scale, float) and p.tops == ("data",)
    p = data_layer_params({"source": "a", "batch_size": 2, "mean_value": [104, 117.0, 123]})
    assert p.stream.mean_value == (104.0, 117.0, 123.0)


@pytest.mark.parametrize("value, expected", [(0, 0), (1, 1), ("TRAIN", 0), ("test", 1)])
def test_phase(value, expected):
    assert parse_phase(value) == expected


@pytest.mark.parametrize("value", [2, -1, None, True, "VAL"])
def test_bad_phase(value):
    with pytest.raises(ValueError, match="must be 0 \\(TRAIN\\) or 1 \\(TEST\\)"):
        parse_phase(value)


def test_default_tops():
    assert default_tops(1) == ("data",) and default_tops(2) == ("data", "label")
    with pytest.raises(ValueError, match="'tops'"):
        default_tops(3)


def test_layer_checks_tops_and_bottoms_before_starting(no_leaks):
    layer = DataLayer()
    layer.param_str, layer.phase = "{'source': 'a', 'batch_size': 2}", 0
    with pytest.raises(ValueError, match="no bottom"):
        layer.setup(blobs(1), blobs(2))
    layer.param_str = "{'source': 'a', 'batch_size': 2, 'tops': ['data']}"
    with pytest.raises(ValueError, match="names 1 fields .* 2 tops"):
        layer.setup([], blobs(2))
    layer.phase = 7
    with pytest.raises(ValueError, match="phase=7"):
        layer.setup([], blobs(2))
    with pytest.raises(RuntimeError, match="not set up"):
        layer.forward([], blobs(2))
    layer.close()  # closing a layer that never started is fine


def test_occlude_params():
    assert occlude_layer_params({}).seed is None
    assert occlude_layer_params(parse_param_str("{'seed': 3, 'in_test': True}")).in_test
    with pytest.raises(ValueError, match="unknown keys \\['sed'\\].*valid keys: seed, in_test"):
        occlude_layer_params({"sed": 3})
    layer = OccludeLayer()
    layer.param_str, layer.phase = "{'seed': 'x'}", 0
    with pytest.raises(ValueError, match="'seed' must be int"):
        layer.setup(blobs(1), blobs(1))
