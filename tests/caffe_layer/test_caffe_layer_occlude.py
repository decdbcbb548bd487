"""OccludeLayer: a random H/2 x W/2 block zeroed per item in TRAIN; gradient only where the input was kept."""
from __future__ import annotations

import numpy as np
import pytest
from caffe_blobs import Blob, BlobVec

from feedstock.caffe_layer import OccludeLayer
from feedstock.transforms import occlude_batch

SHAPE = (4, 3, 8, 10)


def setup_layer(param_str: str = "{'seed': 5}", phase: int = 0):
    layer = OccludeLayer()
    layer.param_str, layer.phase = param_str, phase
    bottom, top = BlobVec([Blob(*SHAPE)]), BlobVec([Blob()])
    bottom[0].data[...] = np.random.default_rng(0).random(SHAPE, dtype=np.float32) + 1.0  # no zeros
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    return layer, bottom, top


def blocks(y: np.ndarray) -> list:
    """(top, left) of the zeroed block of each item, checking it is one (H/2, W/2) block in every channel."""
    out = []
    for item in y:
        zero = item == 0
        assert all(np.array_equal(zero[0], z) for z in zero)
        rows, cols = np.nonzero(zero[0])
        assert len(rows) == (SHAPE[2] // 2) * (SHAPE[3] // 2)
        top, left = rows.min(), cols.min()
        assert (rows.max() - top + 1, cols.max() - left + 1) == (SHAPE[2] // 2, SHAPE[3] // 2)
        out.append((int(top), int(left)))
    return out


def test_forward_zeroes_one_quarter_block_per_item():
    layer, bottom, top = setup_layer()
    assert top[0].data.shape == SHAPE
    x = bottom[0].data.copy()
    layer.forward(bottom, top)
    y = top[0].data
    first = blocks(y)
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept])
    assert len(set(first)) > 1  # each item draws its own position
    np.testing.assert_array_equal(y, occlude_batch(x, np.random.Generator(np.random.PCG64(5))))
    layer.forward(bottom, top)
    assert blocks(top[0].data) != first  # a fresh draw every forward


def test_backward_passes_gradient_only_where_kept():
    layer, bottom, top = setup_layer()
    layer.forward(bottom, top)
    grad = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    top[0].diff[...] = grad
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.where(top[0].data == 0, 0, grad))
    bottom[0].diff[...] = 7.0
    layer.backward(top, [False], bottom)
    assert (bottom[0].diff == 7.0).all()


def test_same_seed_same_blocks_and_unseeded_layers_differ():
    runs = []
    for text in ("{'seed': 3}", "{'seed': 3}", "", ""):
        layer, bottom, top = setup_layer(text)
        layer.forward(bottom, top)
        runs.append(blocks(top[0].data))
    assert runs[0] == runs[1]
    assert runs[2] != runs[3]  # fresh entropy, as Caffe seeds from /dev/urandom


@pytest.mark.parametrize("param_str, occludes", [("{'seed': 1}", False), ("{'seed': 1, 'in_test': True}", True)])
def test_test_phase(param_str, occludes):
    layer, bottom, top = setup_layer(param_str, phase=1)
    layer.forward(bottom, top)
    assert bool((top[0].data == 0).any()) == occludes
    if not occludes:
        np.testing.assert_array_equal(top[0].data, bottom[0].data)
        top[0].diff[...] = 3.0
        layer.backward(top, [True], bottom)
        assert (bottom[0].diff == 3.0).all()


def test_top_follows_the_bottom_shape():
    layer, bottom, top = setup_layer()
    bottom[0].reshape(2, 1, 6, 6)
    bottom[0].data[...] = 1.0
    layer.reshape(bottom, top)
    assert top[0].data.shape == (2, 1, 6, 6)
    layer.forward(bottom, top)
    assert (top[0].data == 0).sum() == 2 * 9
    with pytest.raises(ValueError, match="1 bottom and 1 top"):
        OccludeLayer().setup(BlobVec([]), BlobVec([Blob()]))
