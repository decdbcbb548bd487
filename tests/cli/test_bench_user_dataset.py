"""``feedstock bench --dataset module:factory``: a user's own Python dataset, measured like our sources."""
from __future__ import annotations

import json

import pytest

from feedstock.benchtool.user_dataset import load_factory
from feedstock.cli.main import main

FAST = ["--seconds", "0.05", "--workers", "1", "-q", "--batch-size", "16"]


def test_bench_measures_a_users_dataset_and_names_its_getitem_as_the_bound(capsys):
    pytest.importorskip("torch")
    assert main(["bench", "--dataset", "dataset_helpers:make_busy", "--compare", "torch", "--json", *FAST]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["source"] == "dataset_helpers:make_busy (Busy, 512 records)"
    # __getitem__ is the source stage and nearly all of a record's one-core time (no transforms); which stage
    # the verdict names also depends on the sweep's rates, which a loaded machine moves
    assert doc["verdict"]["stage_shares"]["read"] > 0.8
    assert doc["stages"]["source"]["us_per_record"] > 10  # ~40 us of arithmetic per record
    assert [p["workers"] for p in doc["loader"]] == [0, 1]
    assert all(p["samples_per_s"] > 0 for p in doc["loader"])
    assert set(doc["torch_dataloader"]) == {"0", "1"} and all(r > 0 for r in doc["torch_dataloader"].values())  # torch's DataLoader on the same dataset


@pytest.mark.parametrize("spec, message", [
    ("dataset_helpers", "expected MODULE:FACTORY"),
    ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
    ("dataset_helpers:nothing", "has no attribute 'nothing'"),
])
def test_a_bad_dataset_flag_names_the_flag(spec, message):
    with pytest.raises(ValueError, match=message):
        load_factory(spec)


def test_a_factory_a_class_and_an_object_all_name_a_dataset():
    from dataset_helpers import Busy, OnlyIter

    assert isinstance(load_factory("dataset_helpers:make_busy"), Busy)
    assert isinstance(load_factory("dataset_helpers:Busy"), Busy)
    assert load_factory("dataset_helpers:WORKER") == [-1]
    assert isinstance(load_factory("dataset_helpers:OnlyIter"), OnlyIter)


def test_an_iterable_only_dataset_gets_the_door_error(capsys):
    assert main(["bench", "--dataset", "dataset_helpers:OnlyIter", *FAST]) != 0
    err = capsys.readouterr().err
    assert "--dataset dataset_helpers:OnlyIter: OnlyIter is not a map-style dataset" in err and "random access" in err
