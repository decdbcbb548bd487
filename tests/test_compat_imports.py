"""Importing feedstock or its Caffe layer loads no optional heavy library (h5py, matplotlib, zmq).

h5py's bundled libhdf5 clashes with the libhdf5 the ``caffe`` binary links, so the
DataLayer must load without it; each check runs in a fresh interpreter.
"""
from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

HEAVY = ("h5py", "matplotlib", "zmq")


def _loaded_after(code: str) -> list[str]:
    """The HEAVY modules present in sys.modules after running ``code`` in a new interpreter."""
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [m for m in out.stdout.strip().split(",") if m]


@pytest.mark.parametrize(
    "code",
    [
        "import feedstock.caffe_layer",
        "import feedstock",
        "from feedstock import Loader, CaffeLmdb, Hdf5, ListFile, CaffeTransform, LmdbWriter",
        "import feedstock.caffe_params, feedstock.loaders, feedstock.transforms, feedstock.pipeline",
        "import feedstock.stream, feedstock.writers, feedstock.caffe_pb",
    ],
)
def test_import_loads_no_heavy_library(code: str) -> None:
    assert _loaded_after(code) == []


BLOCKED_RUN = """
import sys
for name in {heavy!r}:
    sys.modules[name] = None  # importing it now raises ImportError, as a clashing libhdf5 would fail
sys.modules["caffe"] = None  # duck-typed blobs below: pycaffe's Layer needs a real LayerParameter
sys.path.insert(0, {tests!r})
import numpy as np
from caffe_blobs import make_layer, run_forwards
from feedstock.caffe_layer import close_layers
from feedstock.fixtures.synthetic import make_raw_lmdb

images, labels = make_raw_lmdb({db!r}, np.random.default_rng(0), 10, (1, 6, 5), classes=3)
for source in ({db!r}, {listing!r}):
    layer, top = make_layer({{"source": source, "batch_size": 4, "workers": 2, "scale": 0.5}}, phase=1)
    data, label = run_forwards(layer, top, 3)
    layer.close()
    if source == {db!r}:
        assert np.array_equal(data, images[np.arange(12) % 10] * np.float32(0.5)), "wrong batches"
        assert np.array_equal(label, labels[np.arange(12) % 10].astype(np.float32))
    else:
        assert data.shape == (12, 3, 4, 4), data.shape
print("ok")
"""


def test_data_layer_runs_with_heavy_libraries_unimportable(tmp_path) -> None:
    """The layer over an LMDB and a list file, workers included, never needs h5py, matplotlib or zmq."""
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((4, 4, 3), 60 * i, np.uint8))
    listing = tmp_path / "train.txt"
    listing.write_text("".join(f"{tmp_path / f'{i}.png'} {i}\n" for i in range(3)))
    tests = os.path.dirname(os.path.abspath(__file__))
    code = BLOCKED_RUN.format(heavy=HEAVY, tests=tests, db=str(tmp_path / "db"), listing=str(listing))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_guessing_a_list_file_kind_loads_no_h5py(tmp_path) -> None:
    listing = tmp_path / "train.txt"
    listing.write_text("a.png 0\nb.png 1\n")
    code = f"from feedstock.loaders import guess_kind\nassert guess_kind({str(listing)!r}) == 'list'"
    assert _loaded_after(code) == []


def test_remote_classes_still_reexported_on_use() -> None:
    code = (
        "import feedstock\nfrom feedstock.remote import FeedServer, RemoteLoader\n"
        "assert feedstock.RemoteLoader is RemoteLoader and feedstock.FeedServer is FeedServer\n"
        "assert 'RemoteLoader' in dir(feedstock)"
    )
    assert _loaded_after(code) == ["zmq"]  # the control: using the remote feed does load pyzmq


def test_unknown_attribute_is_an_attribute_error() -> None:
    import feedstock

    with pytest.raises(AttributeError, match="no_such_thing"):
        feedstock.no_such_thing  # noqa: B018


def test_hdf5_detected_by_signature_without_extension(tmp_path) -> None:
    """guess_kind reads HDF5's signature itself; also after a 512-byte user block, as H5Fis_hdf5 does."""
    from feedstock.loaders import Hdf5, guess_kind

    plain = tmp_path / "data.bin"
    with h5py.File(plain, "w") as f:
        f["data"] = np.arange(6, dtype=np.float32).reshape(3, 2)
        f["label"] = np.arange(3, dtype=np.float32)
    blocked = tmp_path / "blocked.bin"
    with h5py.File(blocked, "w", userblock_size=512) as f:
        f["data"] = np.ones((2, 2), np.float32)
        f["label"] = np.zeros(2, np.float32)
    assert h5py.is_hdf5(blocked)  # the independent check the signature scan must agree with
    assert guess_kind(str(plain)) == guess_kind(str(blocked)) == "hdf5"
    assert len(Hdf5(str(plain))) == 3 and len(Hdf5(str(blocked))) == 2
    impostor = tmp_path / "notes.bin"
    impostor.write_bytes(b"\x00" * 512 + b"\x89HDX\r\n\x1a\n" + b"\x00" * 600)
    assert not h5py.is_hdf5(impostor)
    with pytest.raises(ValueError, match="cannot tell the format"):
        guess_kind(str(impostor))
