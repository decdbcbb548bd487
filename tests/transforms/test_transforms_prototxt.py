"""CaffeTransform.from_prototxt and the tiny text-format parser."""
from __future__ import annotations

import numpy as np
import pytest

from feedstock.caffe_pb import write_mean_file
from feedstock.rng import sample_rng
from feedstock.transforms import CaffeTransform, parse_prototxt

PROTOTXT = """
layer {
  name: "data"  type: "Data"  top: "data"  top: "label"
  include { phase: TRAIN }
  transform_param {
    mirror: true   # random flip
    crop_size: 3
    mean_value: 104
    mean_value: 117
    mean_value: 123
    scale: 0.00390625
  }
  data_param { source: "train_lmdb" batch_size: 64 backend: LMDB }
}
"""


def test_from_prototxt_equals_from_param_and_the_constructor():
    a = CaffeTransform.from_prototxt(PROTOTXT, "TRAIN")
    b = CaffeTransform.from_param(
        {"mirror": True, "crop_size": 3, "mean_value": [104, 117, 123], "scale": 0.00390625}, phase=0)
    c = CaffeTransform(phase="TRAIN", mirror=True, crop_size=3, mean_value=[104, 117, 123], scale=0.00390625)
    x = np.random.default_rng(1).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    outs = [t({"data": x}, sample_rng(0, 0, 9))["data"] for t in (a, b, c)]
    assert repr(a) == repr(b) == repr(c)
    assert outs[0].tobytes() == outs[1].tobytes() == outs[2].tobytes()


def test_from_prototxt_reads_a_quoted_mean_file_and_a_bare_body(tmp_path):
    mean = np.full((1, 4, 4), 10, np.float32)
    path = tmp_path / "my mean.binaryproto"
    write_mean_file(path, mean)
    text = f'transform_param {{ mean_file: "{path}"  crop_size: 2  mirror: false  scale: 2 }}'
    t = CaffeTransform.from_prototxt(text, "TEST")
    assert t.mean_file == str(path) and not t.mirror
    out = t({"data": np.full((1, 4, 4), 13, np.uint8)}, sample_rng(0, 0, 0))["data"]
    np.testing.assert_array_equal(out, np.full((1, 2, 2), 6, np.float32))
    body = CaffeTransform.from_prototxt("crop_size: 2 # just the body\nforce_gray: true", 1)
    assert body.crop_size == 2 and body.force_gray and not body.train


def test_parse_prototxt_handles_the_text_format_basics():
    text = """
    # a comment
    name: "net" 'work'   # adjacent strings join
    layer { top: "a" top: "b"  param: [1, 2.5, -3e-2]  flag: true }
    layer: { mean_value: 104 mean_value: 117; octal: 010 hex: 0x1F }
    """
    tree = parse_prototxt(text)
    assert tree["name"] == ["network"]
    first, second = tree["layer"]
    assert first == {"top": ["a", "b"], "param": [1, 2.5, -0.03], "flag": [True]}
    assert second == {"mean_value": [104, 117], "octal": [8], "hex": [31]}
    with pytest.raises(ValueError, match="line 2"):
        parse_prototxt("a: 1\nb: }")


def test_prototxt_errors_are_clear():
    with pytest.raises(ValueError, match="'crop_size' is given 2 times"):
        CaffeTransform.from_prototxt("crop_size: 2 crop_size: 3", "TRAIN")
    with pytest.raises(ValueError, match="2 transform_param blocks"):
        CaffeTransform.from_prototxt("transform_param { } transform_param { }", "TRAIN")
    with pytest.raises(ValueError, match="missing '}'"):
        CaffeTransform.from_prototxt("transform_param { crop_size: 2", "TRAIN")
    with pytest.raises(ValueError, match="unexpected character"):
        parse_prototxt("crop_size: 2 $")
