"""DataLayer end to end with duck-typed blobs: every source type, Caffe's values, TRAIN/TEST, wrap-around."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List

import cv2
import h5py
import numpy as np
import pytest
from caffe_blobs import blobs, make_layer, run_forwards

from feedstock.caffe_layer import DataLayer
from feedstock.caffe_pb import write_mean_file
from feedstock.errors import WorkerError
from feedstock.fixtures.synthetic import make_encoded_lmdb, make_image_folder, make_raw_lmdb, write_otto_csv
from feedstock.loaders import CaffeLmdb, CsvTable, Hdf5, ImageFolder, ListFile
from feedstock.pipeline.loader import Loader
from feedstock.transforms import CaffeTransform

H, W, CROP = 8, 10, 6
MEAN = [10.0, 20.0, 30.0]


@dataclass
class Case:
    """A tiny dataset on disk plus what a source must yield from it, in index order."""

    kind: str
    params: Dict[str, Any]
    images: np.ndarray  # (N, C, H, W) as stored, before any transform
    labels: np.ndarray
    source: Any = None  # the feedstock source, for the Loader reference
    extra: Dict[str, np.ndarray] = field(default_factory=dict)


def _hwc_images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, H, W, 3), dtype=np.uint8)


def raw_lmdb(tmp, rng) -> Case:
    path = str(tmp / "raw_lmdb")
    images, labels = make_raw_lmdb(path, rng, 10, (3, H, W))
    return Case("lmdb", {"source": path}, images, labels, CaffeLmdb(path))


def encoded_lmdb(tmp, rng) -> Case:
    path = str(tmp / "encoded_lmdb")
    hwc, labels = _hwc_images(rng, 10), rng.integers(0, 5, size=10)
    make_encoded_lmdb(path, list(hwc), labels, ext=".png")
    return Case("lmdb", {"source": path}, hwc.transpose(0, 3, 1, 2), labels, CaffeLmdb(path))


def list_file(tmp, rng) -> Case:
    root = tmp / "list_images"
    root.mkdir()
    hwc, labels = _hwc_images(rng, 10), rng.integers(0, 5, size=10)
    lines = []
    for i, (img, label) in enumerate(zip(hwc, labels)):
        name = f"img {i}.png"  # a space in the name: Caffe splits at the last space
        assert cv2.imwrite(str(root / name), img)
        lines.append(f"{name} {label}")
    listing = tmp / "train.txt"
    listing.write_text("\n".join(lines) + "\n")
    root_folder = str(root) + os.sep
    return Case("list", {"source": str(listing), "root_folder": root_folder}, hwc.transpose(0, 3, 1, 2),
                labels, ListFile(str(listing), root=root_folder))


def image_folder(tmp, rng) -> Case:
    root = str(tmp / "folder")
    found = make_image_folder(root, rng, classes=("cat", "dog"), per_class=5, size=(H, W))
    images = np.stack([cv2.imread(p, cv2.IMREAD_COLOR).transpose(2, 0, 1) for p, _ in found])
    labels = np.array([label for _, label in found])
    return Case("folder", {"source": root}, images, labels, ImageFolder(root))


def csv_table(tmp, rng) -> Case:
    path = str(tmp / "otto.csv")
    counts, labels = rng.integers(0, 9, size=(10, 6)), np.arange(10) % 3
    write_otto_csv(path, counts, labels, first_id=101)
    case = Case("csv", {"source": path}, counts.astype(np.float32)[:, :, None, None], labels,
                CsvTable(path, caffe_shape=True))
    case.extra["id"] = np.arange(101, 111)
    return case


def hdf5_list(tmp, rng) -> Case:
    data = rng.standard_normal((10, 2, 3, 4)).astype(np.float32)
    labels = rng.integers(0, 7, size=10)
    for name, rows in (("part0.h5", slice(0, 6)), ("part1.h5", slice(6, 10))):
        with h5py.File(tmp / name, "w") as f:
            f["data"] = data[rows]
            f["label"] = labels[rows].astype(np.float64)  # converted to float32, as Caffe
    listing = tmp / "train_h5.txt"
    listing.write_text("part0.h5\npart1.h5\n")
    return Case("hdf5", {"source": str(listing)}, data, labels, Hdf5(str(listing)))


MAKERS = {f.__name__: f for f in (raw_lmdb, encoded_lmdb, list_file, image_folder, csv_table, hdf5_list)}


@pytest.fixture(scope="module", params=sorted(MAKERS))
def case(request, tmp_path_factory) -> Case:
    tmp = tmp_path_factory.mktemp(request.param)
    return MAKERS[request.param](tmp, np.random.default_rng(len(request.param)))


def transform_keys(kind: str, phase: str) -> Dict[str, Any]:
    """Caffe transform_param for each kind: crop/mean/scale for images, mean/scale for CSV, none for HDF5."""
    if kind in ("lmdb", "list", "folder"):
        keys = {"crop_size": CROP, "mean_value": MEAN, "scale": 0.5}
        return {**keys, "mirror": True} if phase == "TRAIN" else keys
    return {"mean_value": [2.0], "scale": 0.25} if kind == "csv" else {}




def caffe_test_phase(case: Case, idx: np.ndarray) -> np.ndarray:
    """Caffe's DataTransformer in TEST by hand: centred crop (floor division), (x - mean) * scale."""
    x = case.images[idx].astype(np.float32)
    if case.kind == "csv":
        return (x - 2.0) * 0.25
    if case.kind == "hdf5":
        return x
    top, left = (H - CROP) // 2, (W - CROP) // 2
    x = x[:, :, top : top + CROP, left : left + CROP]
    return (x - np.float32(MEAN)[:, None, None]) * np.float32(0.5)


def test_test_phase_values_match_caffe_and_wrap_across_epochs(case, no_leaks):
    # batch 4 over 10 records: forwards 3 and 5 span an epoch boundary, as Caffe's cursor wraps.
    params = {**case.params, "batch_size": 4, "workers": 1, "seed": 3, **transform_keys(case.kind, "TEST")}
    layer, top = make_layer(params, phase=1)
    try:
        data, label = run_forwards(layer, top, 6)
    finally:
        layer.close()
    idx = np.arange(24) % 10
    assert top[0].data.shape == (4,) + caffe_test_phase(case, idx[:1]).shape[1:]
    assert top[1].data.shape == (4,) and top[1].data.dtype == np.float32
    np.testing.assert_array_equal(data, caffe_test_phase(case, idx))
    np.testing.assert_array_equal(label, case.labels[idx].astype(np.float32))


def reference_stream(case: Case, seed: int, rows: int, transforms: List[Any]) -> Dict[str, np.ndarray]:
    """The same data straight from Loader + CaffeTransform (in-process), epoch after epoch."""
    got: Dict[str, List[np.ndarray]] = {"data": [], "label": []}
    with Loader(case.source, transforms, batch_size=4, workers=0, shuffle=True, seed=seed,
                drop_last=False) as loader:
        while sum(len(x) for x in got["data"]) < rows:
            for batch in loader:
                for name in got:
                    got[name].append(batch[name].copy())
    return {name: np.concatenate(parts)[:rows] for name, parts in got.items()}


def test_train_phase_matches_loader_and_caffe_transform(case, no_leaks):
    keys = transform_keys(case.kind, "TRAIN")
    params = {**case.params, "batch_size": 4, "shuffle": True, "workers": 2, "seed": 11, **keys}
    layer, top = make_layer(params, phase=0)
    try:
        data, label = run_forwards(layer, top, 7)
    finally:
        layer.close()
    transforms = [] if case.kind == "hdf5" else [CaffeTransform.from_param(keys, "TRAIN")]
    ref = reference_stream(case, 11, 28, transforms)
    np.testing.assert_array_equal(data, ref["data"])
    np.testing.assert_array_equal(label, ref["label"].astype(np.float32))
    # Shuffled epochs still hold every record exactly once, in a new order each epoch.
    for epoch in range(2):
        assert sorted(label[epoch * 10 : epoch * 10 + 10]) == sorted(case.labels.astype(np.float32))


def windows(image: np.ndarray) -> Dict[tuple, np.ndarray]:
    """Every crop a Caffe TRAIN transform may produce from ``image``: (top, left, mirrored) -> pixels."""
    out = {}
    for top in range(H - CROP + 1):
        for left in range(W - CROP + 1):
            crop = image[:, top : top + CROP, left : left + CROP].astype(np.float32)
            out[(top, left, False)] = crop
            out[(top, left, True)] = crop[:, :, ::-1]
    return out


@pytest.fixture(scope="module")
def lmdb_case(tmp_path_factory) -> Case:
    return raw_lmdb(tmp_path_factory.mktemp("lmdb_case"), np.random.default_rng(0))


def test_train_crops_are_random_windows_test_crops_centred(lmdb_case, no_leaks):
    params = {**lmdb_case.params, "batch_size": 5, "shuffle": True, "crop_size": CROP, "mirror": True,
              "workers": 0, "seed": 4}
    layer, top = make_layer(params, phase=0)
    try:
        data, _ = run_forwards(layer, top, 4)
    finally:
        layer.close()
    every = {(i, *k): v for i, img in enumerate(lmdb_case.images) for k, v in windows(img).items()}
    found = [next(key for key, crop in every.items() if np.array_equal(crop, row)) for row in data]
    order = [key[0] for key in found]
    assert sorted(order[:10]) == sorted(order[10:]) == list(range(10))  # each epoch a permutation
    assert order[:10] != order[10:]  # reshuffled at the wrap, as ImageData does
    offsets = {key[1:3] for key in found}
    assert len(offsets) > 3 and {key[3] for key in found} == {False, True}
    # TEST: centred and, without mirror, the same crop every time.
    layer, top = make_layer({**params, "mirror": False, "shuffle": False}, phase=1)
    try:
        data, _ = run_forwards(layer, top, 2)
    finally:
        layer.close()
    centred = [(i, (H - CROP) // 2, (W - CROP) // 2, False) for i in range(10)]
    assert [next(k for k, c in every.items() if np.array_equal(c, row)) for row in data] == centred


def test_reshape_is_a_no_op_unless_shapes_changed(lmdb_case, no_leaks):
    layer, top = make_layer({**lmdb_case.params, "batch_size": 3, "workers": 0}, phase=1)
    try:
        assert [b.reshapes for b in top.as_list()] == [1, 1]
        assert top[0].data.shape == (3, 3, H, W) and top[1].data.shape == (3,)
        arrays = [b.data for b in top.as_list()]
        run_forwards(layer, top, 5)
        assert [b.reshapes for b in top.as_list()] == [1, 1]
        assert all(b.data is a for b, a in zip(top.as_list(), arrays))  # forward wrote in place
        top[0].reshape(1, 2)  # someone else changed it: reshape() puts it back
        layer.reshape([], top)
        assert top[0].data.shape == (3, 3, H, W)
    finally:
        layer.close()


def test_one_top_is_data_only_and_tops_pick_fields(tmp_path, no_leaks):
    case = csv_table(tmp_path, np.random.default_rng(0))
    layer, top = make_layer({**case.params, "batch_size": 4, "workers": 0}, phase=1, tops=1)
    try:
        (data,) = run_forwards(layer, top, 3)
        np.testing.assert_array_equal(data, case.images[np.arange(12) % 10])
    finally:
        layer.close()
    params = {**case.params, "batch_size": 4, "workers": 0, "tops": ["label", "id", "data"]}
    layer, top = make_layer(params, phase=1, tops=3)
    try:
        label, ids, data = run_forwards(layer, top, 3)
        np.testing.assert_array_equal(ids, case.extra["id"][np.arange(12) % 10])
        np.testing.assert_array_equal(label, case.labels[np.arange(12) % 10])
    finally:
        layer.close()


def test_json_and_yaml_param_str_drive_the_layer(lmdb_case, no_leaks):
    source = lmdb_case.params["source"]
    for text in (json.dumps({"source": source, "batch_size": 2, "workers": 0}),
                 f"source: {source}\nbatch_size: 2\nworkers: 0\n"):
        layer = DataLayer()
        layer.param_str, layer.phase = text, 1
        top = blobs(2)
        layer.setup([], top)
        try:
            data, label = run_forwards(layer, top, 1)
        finally:
            layer.close()
        np.testing.assert_array_equal(data, lmdb_case.images[:2])


def test_resize_and_gray(tmp_path, no_leaks):
    case = list_file(tmp_path, np.random.default_rng(1))
    params = {**case.params, "batch_size": 2, "workers": 0, "new_height": 4, "new_width": 5, "is_color": False}
    layer, top = make_layer(params, phase=1)
    try:
        data, _ = run_forwards(layer, top, 1)
    finally:
        layer.close()
    # OpenCV's INTER_LINEAR on a 2x downscale is the 2x2 block mean rounded half up (docs/caffe-compat.md, note 23).
    # is_color: false reads grey with imread, as Caffe's ReadImageToCVMat does.
    grey = [cv2.imread(str(tmp_path / "list_images" / f"img {i}.png"), cv2.IMREAD_GRAYSCALE).astype(np.int32)
            for i in range(2)]
    blocks = [(g[0::2, 0::2] + g[1::2, 0::2] + g[0::2, 1::2] + g[1::2, 1::2] + 2) // 4 for g in grey]
    np.testing.assert_array_equal(data, np.stack(blocks)[:, None].astype(np.float32))


def test_configuration_errors_are_clear(tmp_path, lmdb_case, no_leaks):
    h5 = hdf5_list(tmp_path, np.random.default_rng(0))
    with pytest.raises(ValueError, match="HDF5 sources take no transform_param"):
        make_layer({**h5.params, "batch_size": 2, "crop_size": 2}, phase=0)
    with pytest.raises(ValueError, match="does not exist"):
        make_layer({"source": str(tmp_path / "missing_lmdb"), "batch_size": 2}, phase=0)
    with pytest.raises(ValueError, match=r"yields fields \['data', 'label'\], not \['mask'\]"):
        make_layer({**lmdb_case.params, "batch_size": 2, "workers": 1, "tops": ["data", "mask"]}, phase=0)
    with pytest.raises(ValueError, match="new_height/new_width resize images"):
        make_layer({**h5.params, "batch_size": 2, "new_height": 2, "new_width": 2}, phase=0)


def test_train_and_test_nets_share_one_lmdb(lmdb_case, no_leaks):
    # Caffe builds a TRAIN and a TEST net in one process, often on one LMDB (py-lmdb opens an env once).
    train, train_top = make_layer({**lmdb_case.params, "batch_size": 4, "workers": 1, "crop_size": CROP}, phase=0)
    test, test_top = make_layer({**lmdb_case.params, "batch_size": 3, "workers": 0, "crop_size": CROP}, phase=1)
    try:
        for _ in range(3):
            run_forwards(train, train_top, 2)
            data, _ = run_forwards(test, test_top, 1)
        idx = np.arange(6, 9)  # the test cursor continues between test passes, as Caffe's does
        np.testing.assert_array_equal(data, lmdb_case.images[idx][:, :, 1:7, 2:8])
    finally:
        train.close()
        test.close()


def test_on_error_raise_names_the_file_and_skip_substitutes(tmp_path, no_leaks):
    case = list_file(tmp_path, np.random.default_rng(2))
    bad = tmp_path / "list_images" / "img 5.png"
    bad.write_bytes(b"not a png")
    layer, top = make_layer({**case.params, "batch_size": 4, "workers": 1}, phase=1)
    try:
        with pytest.raises(WorkerError, match="img 5.png"):
            run_forwards(layer, top, 2)
    finally:
        layer.close()
    layer, top = make_layer({**case.params, "batch_size": 4, "workers": 1, "on_error": "skip",
                              "max_bad_fraction": 0.2}, phase=1)
    try:
        data, label = run_forwards(layer, top, 2)
    finally:
        layer.close()
    good = [i for i in range(8) if i != 5]
    np.testing.assert_array_equal(data[good], case.images[good].astype(np.float32))
    assert any(np.array_equal(data[5], img) for img in case.images.astype(np.float32))  # a substitute record


def test_mean_file_is_indexed_at_the_crop_offset(lmdb_case, tmp_path, no_leaks):
    mean = np.random.default_rng(5).integers(0, 64, size=(3, H, W)).astype(np.float32)
    write_mean_file(str(tmp_path / "mean.binaryproto"), mean)
    params = {**lmdb_case.params, "batch_size": 5, "workers": 0, "crop_size": CROP, "scale": 0.5,
              "mean_file": str(tmp_path / "mean.binaryproto")}
    layer, top = make_layer(params, phase=1)
    try:
        data, _ = run_forwards(layer, top, 2)
    finally:
        layer.close()
    top_, left = (H - CROP) // 2, (W - CROP) // 2
    window = (slice(None), slice(None), slice(top_, top_ + CROP), slice(left, left + CROP))
    expected = (lmdb_case.images.astype(np.float32) - mean)[window] * np.float32(0.5)
    np.testing.assert_array_equal(data, expected)


def test_force_gray_decodes_encoded_datums_and_leaves_raw_ones(tmp_path, lmdb_case, no_leaks):
    encoded = encoded_lmdb(tmp_path, np.random.default_rng(3))
    layer, top = make_layer({**encoded.params, "batch_size": 2, "workers": 0, "force_gray": True}, phase=1)
    try:
        data, _ = run_forwards(layer, top, 1)
    finally:
        layer.close()
    payloads = [cv2.imencode(".png", img.transpose(1, 2, 0))[1] for img in encoded.images[:2]]
    grey = np.stack([cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)[None] for buf in payloads])
    np.testing.assert_array_equal(data, grey.astype(np.float32))
    layer, top = make_layer({**lmdb_case.params, "batch_size": 2, "workers": 0, "force_gray": True}, phase=1)
    try:
        data, _ = run_forwards(layer, top, 1)  # raw Datums: Caffe only logs that force_gray is ignored
    finally:
        layer.close()
    np.testing.assert_array_equal(data, lmdb_case.images[:2].astype(np.float32))
