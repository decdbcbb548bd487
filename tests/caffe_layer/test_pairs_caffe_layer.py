"""The Caffe DataLayer with image + mask pairs: float32 data and label tops, aligned for every draw."""
from __future__ import annotations

import numpy as np
import pytest
from caffe_blobs import make_layer, run_forwards
from pairs_helpers import IGNORE, PAD_VALUE, check_aligned, write_threshold_pairs

SIZES = [(40, 52), (64, 48), (30, 30), (57, 71), (48, 48)]
MEAN = np.array([10, 20, 30], np.float32)[:, None, None]


def _params(images, masks, **extra) -> dict:
    params = {"source": str(images), "masks": str(masks), "source_type": "pairs", "scales": [0.6, 1, 1.4],
              "crop_size": 40, "mirror": True, "pad_value": PAD_VALUE, "mean_value": [10, 20, 30],
              "batch_size": 3, "shuffle": True, "seed": 3, "workers": 0}
    params.update(extra)
    return params


def _run(params: dict, phase: int, forwards: int):
    layer, top = make_layer(params, phase=phase)
    try:
        shapes = [b.data.shape for b in top.as_list()]
        return shapes, run_forwards(layer, top, forwards)
    finally:
        layer.close()


def test_train_tops_are_float32_class_ids_aligned_with_the_image(tmp_path):
    images, masks, _ = write_threshold_pairs(tmp_path, SIZES)
    shapes, (data, label) = _run(_params(images, masks), phase=0, forwards=7)  # 21 rows: 4+ epochs wrap
    assert shapes == [(3, 3, 40, 40), (3, 1, 40, 40)]
    assert data.dtype == label.dtype == np.float32
    assert set(np.unique(label)) <= {0, 1, 2, 3, IGNORE} and (label == IGNORE).any()
    for x, y in zip(data, label):
        check_aligned(x + MEAN, y)  # mean_value subtracted from the image, never from the label
    _, (data2, label2) = _run(_params(images, masks, workers=2), phase=0, forwards=7)
    np.testing.assert_array_equal(data, data2)
    np.testing.assert_array_equal(label, label2)


def test_test_phase_gives_the_whole_image_padded_with_ignore(tmp_path):
    images, masks, written = write_threshold_pairs(tmp_path, SIZES)
    params = _params(images, masks, crop_size=0, batch_size=1, shuffle=False)
    shapes, (data, label) = _run(params, phase=1, forwards=len(SIZES))
    assert shapes == [(1, 3, 64, 71), (1, 1, 64, 71)]  # largest height, largest width; scale 1, no mirror
    for x, y, (image, mask) in zip(data, label, written):
        h, w = mask.shape
        np.testing.assert_array_equal(x[:, :h, :w] + MEAN, image.transpose(2, 0, 1))
        np.testing.assert_array_equal(y[0, :h, :w], mask)
        assert (y[0, h:] == IGNORE).all() and (y[0, :, w:] == IGNORE).all()


def test_param_str_errors_name_the_key(tmp_path):
    images, masks, _ = write_threshold_pairs(tmp_path, SIZES[:1])
    with pytest.raises(ValueError, match="ignore_label"):
        make_layer(_params(images, masks, ignore_label=256))
    with pytest.raises(ValueError, match="masks"):
        make_layer(_params(images, ""))
