"""train()'s inputs: a Stream's TRAIN/TEST phases, the model's scaling rule, class codes, the deploy record."""
from __future__ import annotations

import numpy as np
import pytest

from feedstock.fixtures.synthetic import make_raw_lmdb
from feedstock.loaders import ArraySource, CsvTable
from feedstock.stream import Stream
from feedstock.trainer.deploy import load_deployment
from feedstock.trainer.inputs import open_feeds
from feedstock.trainer.loop import train
from feedstock.trainer.models import otto_mlp
from feedstock.trainer.predict import Predictor


def feeds_of(stream, val, **kw):
    return open_feeds(stream, val, holdout=0.0, batch_size=None, workers=0, seed=None, model_scaling=None,
                      class_names=None, loader_kwargs={}, **kw)


def kinds(batches):
    return [type(t).__name__ for t in batches.loader.transforms.transforms]


@pytest.fixture
def lmdb(tmp_path):
    path = str(tmp_path / "img_lmdb")
    make_raw_lmdb(path, np.random.default_rng(0), 24, shape=(1, 12, 12))
    return path


def test_validation_reads_the_test_phase_of_the_training_stream(lmdb):
    stream = Stream(source=lmdb, crop_size=8, mirror=True, occlude=True, to_range=(-1, 1), batch_size=4, workers=0)
    feeds = feeds_of(stream, lmdb)
    try:
        assert kinds(feeds.train) == ["CaffeTransform", "Scale", "Occlude"]
        assert kinds(feeds.val) == ["CaffeTransform", "Scale"]  # no occlusion in TEST
        train_t, val_t = feeds.train.loader.transforms.transforms[0], feeds.val.loader.transforms.transforms[0]
        assert (train_t.phase, val_t.phase) == (0, 1)  # random crop and mirror in TRAIN only
        assert feeds.train.loader.sampler.drop_last and not feeds.val.loader.sampler.drop_last
        assert feeds.seed == 0 and feeds.batch_size == 4
        assert feeds.model_scaling is False  # to_range sets the values: the model's x/256 stays off
        assert feeds.stream["occlude"] is True and feeds.stream["source"] == ""
    finally:
        feeds.close()
    plain = feeds_of(Stream(source=lmdb, crop_size=8, batch_size=4, workers=0), None)
    plain.close()
    assert plain.model_scaling is True and plain.val is None


def write_csv(path, names):
    rows = [f"{i + 1},{i % 3},{(2 * i) % 5},{name}" for i, name in enumerate(names)]
    path.write_text("id,f1,f2,target\n" + "\n".join(rows) + "\n")


def test_a_validation_csv_uses_the_training_class_codes(tmp_path):
    """val.csv holds only dog and emu: they keep the training codes 1 and 2, not 0 and 1."""
    write_csv(tmp_path / "train.csv", ["cat", "dog", "emu"] * 4)
    write_csv(tmp_path / "val.csv", ["dog", "emu", "emu"])
    feeds = feeds_of(Stream(source=str(tmp_path / "train.csv"), batch_size=3, workers=0), tmp_path / "val.csv")
    try:
        assert feeds.class_names == ["cat", "dog", "emu"]
        assert next(iter(feeds.val.epoch(0)))["label"].tolist() == [1, 2, 2]
    finally:
        feeds.close()
    assert CsvTable(tmp_path / "val.csv").labels.tolist() == [0, 1, 1]  # the file alone would shift them


def test_the_snapshot_carries_what_predict_needs(tmp_path):
    rng = np.random.default_rng(2)
    x, y = rng.poisson(1.0, (64, 93)).astype(np.float32), rng.integers(0, 9, 64)
    model = otto_mlp(hidden=(8,), dropout=0.0)
    report = train(model, ArraySource(data=x, label=y), None, {"max_iter": 3, "display": 0}, tmp_path,
                   batch_size=16, plots=False, class_names=[f"c{i}" for i in range(9)])
    deploy, params = load_deployment(tmp_path / "snapshot_iter_3.npz")
    assert deploy.model == "otto_mlp" and deploy.input_shape == (93,) and deploy.task == "classification"
    assert deploy.class_names == tuple(f"c{i}" for i in range(9))
    assert deploy.conversion == {"scale": 1.0, "mean": 0.0, "log1p": True} and deploy.stream is None
    assert [s["name"] for s in deploy.layers if "num_output" in s] == ["ip1", "ip2"]  # the hidden width kept
    predictor = Predictor(tmp_path / "snapshot_iter_3.npz", backend="numpy")
    for name, value in report.net.state_dict().items():
        np.testing.assert_array_equal(predictor.net.state_dict()[name], value)
    assert predictor.class_names == [f"c{i}" for i in range(9)]


def test_loader_options_belong_to_sources(lmdb):
    with pytest.raises(ValueError, match=r"loader options \['prefetch'\] apply to sources"):
        train("lenet", Stream(source=lmdb), None, {"max_iter": 1}, None, prefetch=2)
    with pytest.raises(ValueError, match="not both"):
        train("lenet", Stream(source=lmdb), lmdb, {"max_iter": 1}, None, holdout=0.5)
