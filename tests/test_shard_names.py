"""One word for a share of the work (feedstock.shard): shard i/n everywhere, the old spellings accepted and warned."""
from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
import pytest

from feedstock.loaders import ArraySource
from feedstock.pipeline.loader import Loader
from feedstock.pipeline.options import LoaderOptions, OptionError
from feedstock.pipeline.sampler import Sampler
from feedstock.shard import check_shard
from feedstock.stream import Stream, add_stream_arguments, stream_from_args, stream_from_mapping


def _labels(loader: Loader) -> list:
    with loader:
        return [int(v) for b in loader for v in b["label"]]


def _source(n: int = 10) -> ArraySource:
    return ArraySource(data=np.zeros((n, 2), np.uint8), label=np.arange(n))


@pytest.mark.parametrize("value", ["1/4", " 1 / 4 ", (1, 4), [1, 4], (np.int64(1), 4)])
def test_a_shard_is_i_of_n_as_text_or_pair(value):
    assert check_shard(value) == (1, 4)


@pytest.mark.parametrize("value", ["4/4", "-1/4", "1", "1/4/2", "a/b", (1,), (1, 0), (True, 2), (0.5, 2), None, 3])
def test_a_bad_shard_is_one_line_naming_the_key(value):
    with pytest.raises(ValueError, match=r"^where=.*(i/n|0 <= i < n)") as err:
        check_shard(value, "where")
    assert "\n" not in str(err.value)


def test_the_shard_takes_every_nth_sample_as_rank_and_world_size_did():
    # 10 records in order, 3 shards, the short tail kept: padded by wrapping to 12, shard i is order[i::3]
    got = [_labels(Loader(_source(), batch_size=2, workers=0, shard=(i, 3))) for i in range(3)]
    assert got == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]
    with pytest.warns(DeprecationWarning, match="rank=/world_size=.*shard=") as record:
        old = [_labels(Loader(_source(), batch_size=2, workers=0, rank=i, world_size=3)) for i in range(3)]
    assert old == got
    assert record[0].filename == __file__  # the warning points at the caller's line


def test_shard_and_the_old_keywords_together_are_refused():
    with pytest.raises(TypeError, match="not both"):
        Loader(_source(), batch_size=2, workers=0, shard=(0, 2), rank=1, world_size=2)


def test_loader_options_take_shard_and_warn_for_rank_world_size():
    assert LoaderOptions(shard="1/2").shard == (1, 2)
    with pytest.raises(OptionError, match="'shard'=2/2 must have 0 <= i < n"):
        LoaderOptions(shard=(2, 2))
    with pytest.warns(DeprecationWarning):
        assert LoaderOptions.from_kwargs(rank=1, world_size=2).shard == (1, 2)


def test_the_sampler_s_old_keywords_warn_and_mean_the_same():
    new = Sampler(20, batch_size=2, seed=3, shard=(1, 2), batch_shard=(1, 3))
    with pytest.warns(DeprecationWarning) as record:
        old = Sampler(20, batch_size=2, seed=3, rank=1, world_size=2, part=(1, 3))
    assert {str(w.message).split(";")[0] for w in record} == {
        "deprecated: Sampler: rank=/world_size=", "deprecated: Sampler(part=)"}
    assert (old.shard, old.batch_shard, old.part) == (new.shard, new.batch_shard, (1, 3))
    assert [old.batch(0, k).tolist() for k in range(len(old))] == [new.batch(0, k).tolist() for k in range(len(new))]


def test_the_stream_key_shard_and_its_old_keys():
    assert Stream(shard="1/3").shard == (1, 3) == stream_from_mapping({"shard": [1, 3]}).shard
    assert Stream(shard="1/3").as_dict()["shard"] == [1, 3]  # a snapshot stores it as a list: read back above
    with pytest.warns(DeprecationWarning, match="rank/world_size"):
        assert stream_from_mapping({"rank": 1, "world_size": 3}, form="x.yaml") == Stream(shard=(1, 3))
    with pytest.warns(DeprecationWarning):
        assert Stream(shard=(1, 4)).replace(rank=2).shard == (2, 4)  # one of the two keeps the other
    with pytest.raises(ValueError, match="unknown keys \\['part'\\]"):
        stream_from_mapping({"part": "0/2"}, form="x.yaml")
    # the servers' fingerprint keeps its old keys: a server of this release agrees with an older one
    fingerprint = Stream(source="s", shard=(1, 3)).fingerprint()
    assert (fingerprint["rank"], fingerprint["world_size"]) == (1, 3) and "shard" not in fingerprint


def _parse(*argv: str) -> Stream:
    parser = argparse.ArgumentParser()
    add_stream_arguments(parser)
    return stream_from_args(parser.parse_args(["src", *argv]))


def test_the_flag_shard_and_its_old_flags_warn_one_line(caplog):
    assert _parse("--shard", "2/4").shard == (2, 4)
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="feedstock"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert _parse("--rank", "2", "--world-size", "4").shard == (2, 4)
    assert [r.getMessage() for r in caplog.records] == ["deprecated: --rank/--world-size; use --shard RANK/WORLD_SIZE"]
    with pytest.raises(SystemExit):
        _parse("--shard", "4/4")


def test_serve_takes_batch_shard_and_warns_for_part(caplog):
    from feedstock.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(["serve", "src", "--batch-shard", "1/2", "--shard", "0/2"])
    assert args.batch_shard == (1, 2) and args.shard == (0, 2) and not caplog.records
    with caplog.at_level(logging.WARNING, logger="feedstock"):
        assert parser.parse_args(["serve", "src", "--part", "1/2"]).batch_shard == (1, 2)
    assert [r.getMessage() for r in caplog.records] == ["deprecated: --part; use --batch-shard"]
    assert parser.parse_args(["serve", "src"]).batch_shard == (0, 1)


def test_serve_part_still_narrows_the_loader_and_warns():
    from feedstock.remote.served import serve_part, serve_shard

    new = serve_shard(Loader(_source(12), batch_size=2, workers=0), (1, 2))
    with pytest.warns(DeprecationWarning, match="serve_part; use serve_shard"):
        old = serve_part(Loader(_source(12), batch_size=2, workers=0), (1, 2))
    assert _labels(old) == _labels(new) == [2, 3, 6, 7, 10, 11]  # batches 1, 3, 5 of six
