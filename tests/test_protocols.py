"""The declared seams: which parts satisfy which protocol, and the pipeline choosing by isinstance."""
from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

from feedstock.fixtures.synthetic import make_otto_csv, make_raw_lmdb
from feedstock.loaders import ArraySource, CaffeLmdb, CsvTable, Hdf5
from feedstock.loaders.images import LabeledImages
from feedstock.pipeline.fill import Filler, FillPlan
from feedstock.pipeline.loader import Loader
from feedstock.pipeline.pool import ProcessPool
from feedstock.pipeline.run import InlinePool
from feedstock.pipeline.sampler import Sampler
from feedstock.pipeline.shm import SlotLayout, SlotRing
from feedstock.protocols import BatchLoader, BatchReadable, BatchTransform, DecodeTimed, Source, TaskPool, Transform
from feedstock.remote import RemoteLoader
from feedstock.trainer.feeding import Subset, is_loader
from feedstock.transforms import CaffeTransform, Compose, RandomCrop, Resize

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def sources(tmp_path):
    import h5py

    rng = np.random.default_rng(0)
    make_raw_lmdb(str(tmp_path / "db"), rng, 6, (1, 2, 2))
    make_otto_csv(str(tmp_path / "t.csv"), rng, rows=6, features=4)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"], f["label"] = np.arange(12, dtype=np.float32).reshape(6, 2), np.arange(6, dtype=np.float32)
    array = ArraySource(data=np.arange(12).reshape(6, 2), label=np.arange(6))
    return {"array": array, "lmdb": CaffeLmdb(tmp_path / "db"), "csv": CsvTable(tmp_path / "t.csv"),
            "hdf5": Hdf5(tmp_path / "d.h5"), "subset": Subset(array, [5, 0, 3])}


def test_every_source_is_a_source_and_the_batched_ones_say_so(sources):
    for name, src in sources.items():
        assert isinstance(src, Source), name
        assert isinstance(src, BatchReadable), name
        assert not isinstance(src, BatchLoader), name
    assert isinstance(sources["lmdb"], DecodeTimed) and not isinstance(sources["array"], DecodeTimed)
    assert not issubclass(LabeledImages, BatchReadable)  # decoded images of any size: read one by one


def test_hiding_read_batch_opts_a_source_out(sources):
    class RowsOnly(ArraySource):
        read_batch = None

    assert not isinstance(RowsOnly(data=np.zeros((2, 1))), BatchReadable)


def test_subset_reads_through_its_source(sources):
    sub = sources["subset"]
    np.testing.assert_array_equal(sub.read_batch([2, 0])["data"], [[6, 7], [10, 11]])

    class RowsOnly(ArraySource):
        read_batch = None

    assert Subset(RowsOnly(data=np.zeros((3, 1))), [1]).read_batch([0]) is NotImplemented


def test_transforms_and_their_batch_form():
    for t in (CaffeTransform(phase="TEST"), Resize(4, 4), RandomCrop(2), Compose([])):
        assert isinstance(t, Transform), t
    assert isinstance(CaffeTransform(phase="TEST"), BatchTransform)
    assert not isinstance(Resize(4, 4), BatchTransform) and not isinstance(RandomCrop(2), BatchTransform)


def test_loaders_are_batch_loaders_and_nothing_else_is(sources):
    assert issubclass(Loader, BatchLoader) and issubclass(RemoteLoader, BatchLoader)
    loader = Loader(sources["array"], batch_size=2, workers=0, shuffle=True, drop_last=True)
    assert isinstance(loader, BatchLoader) and is_loader(loader)
    assert not is_loader(sources["array"]) and not is_loader((np.zeros(2), np.zeros(2)))


def test_both_pools_are_task_pools():
    inline = InlinePool(lambda payload: payload, lambda wid, payload: "task")
    assert isinstance(inline, TaskPool)
    assert isinstance(ProcessPool(lambda wid: (lambda p: p), workers=1), TaskPool)  # not started


def _filler(source, transforms) -> Filler:
    compose = Compose(transforms)
    sampler = Sampler(len(source), batch_size=2, shuffle=False)
    layout = SlotLayout.of(compose.output_spec(source.spec()), 2)
    return Filler(FillPlan(source, compose, sampler, layout, skip=False), SlotRing.local(layout, 1), 0, source)


def test_the_fast_path_is_chosen_by_protocol(sources):
    lmdb = sources["lmdb"]
    assert _filler(lmdb, [CaffeTransform(phase="TEST")]).fast  # batch read + batch transform
    assert not _filler(lmdb, [CaffeTransform(phase="TEST"), Resize(2, 2)]).fast  # Resize has no batch form
    no_transforms = _filler(sources["csv"], [])
    assert no_transforms.fast and no_transforms.into  # reads straight into the slot rows


CAPABILITIES = ("read_batch", "apply_batch", "get_batch", "get_many", "gathers_into", "decode_s", "spec",
                "slot_arrays", "state_dict", "leased")


def test_the_pipeline_does_not_probe_capabilities():
    probe = re.compile(r"(getattr|hasattr)\([^)]*[\"'](%s)[\"']" % "|".join(CAPABILITIES))
    files = sorted((ROOT / "feedstock" / "pipeline").glob("*.py")) + [ROOT / "feedstock" / "trainer" / "feeding.py"]
    found = [f"{f.name}: {m.group(0)}" for f in files for m in probe.finditer(f.read_text())]
    assert found == []
