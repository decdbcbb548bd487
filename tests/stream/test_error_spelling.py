"""The spelling rule (a setting named as its front end gives it), bounded YAML, cut echoes and worker errors
that carry the record that raised."""
from __future__ import annotations

import functools
import time

import numpy as np
import pytest
from pipeline_helpers import FailOn, make_source

from feedstock.cli.env_errors import CliSpelling, describe
from feedstock.cli.main import build_parser, command_options
from feedstock.errors import KeyedError, WorkerError, WorkerTimeout, literal, spell
from feedstock.loaders.strings import ECHO_CHARS, cut
from feedstock.pipeline import pool as pool_module
from feedstock.pipeline.loader import Loader
from feedstock.pipeline.pool import ProcessPool
from feedstock.stream import Stream, parse_param_str, stream_from_mapping
from feedstock.stream.forms import finite, load_yaml, read_yaml_mapping


def test_a_template_renders_per_front_end_and_drops_a_fix_already_made():
    error = KeyedError("{crop_size=40} is larger than {{the image}", ("lower {crop_size}", "or pass {mirror=False}"))
    assert str(error) == "crop_size=40 is larger than {the image}: lower crop_size; or pass mirror=False"
    flags = error.render(lambda k, v: f"--{k.replace('_', '-')}" + ("" if v is None else f" {v}"),
                         done=lambda k, v: (k, v) == ("mirror", "False"))
    assert flags == "--crop-size 40 is larger than {the image}: lower --crop-size"
    assert spell(literal("key {crop_size} of a record")) == "key {crop_size} of a record"  # foreign text stays


def _spelling(argv, command):
    parser = build_parser()
    args = parser.parse_args(argv)
    return CliSpelling(args, command_options(parser, command)), args


def test_the_cli_spells_flags_as_given_and_config_keys_as_keys():
    spelling, args = _spelling(["serve", "db", "--no-drop-last", "--crop-size", "8"], "serve")
    assert spelling("drop_last", "True") == "--drop-last" and spelling("drop_last", "False") == "--no-drop-last"
    assert spelling("crop_size", "(40, 40)") == "--crop-size 40" and spelling("batch_size", None) == "--batch-size"
    assert spelling("on_error", "'skip'") == "--on-error skip" and spelling("mirror", "True") == "--mirror"
    assert spelling("not_a_flag", "3") == "not_a_flag=3"  # no such flag here: the library's name
    assert spelling.done("drop_last", "False") and not spelling.done("drop_last", "True")
    args.config_keys, args.flag_keys = ["crop_size", "mirror"], ["crop_size"]
    spelling = CliSpelling(args, spelling.options)
    assert spelling("mirror", "True") == "mirror: true" and spelling("crop_size", "8") == "--crop-size 8"
    message = describe(KeyedError("no batch of {batch_size=16}", ("or keep it with {drop_last=False}",)), args,
                       spelling.options)
    assert message == "no batch of --batch-size 16"  # --no-drop-last was given: that fix is left out


def test_a_worker_error_holds_its_traceback_but_renders_one_line():
    error = WorkerError("ValueError: bad {{x} (in worker 0, pid 7)", key="db:row{3}",
                        worker_traceback="Traceback (most recent call last):\n  boom\n", fixes=("skip {on_error='skip'}",))
    assert "Traceback" in str(error) and str(error).startswith("record db:row{3}: ValueError: bad {x}")
    assert error.render() == "record db:row{3}: ValueError: bad {x} (in worker 0, pid 7): skip on_error='skip'"


@pytest.mark.parametrize("workers", [0, 1])
def test_the_error_names_the_record_that_raised_not_the_one_the_worker_is_on(no_leaks, workers):
    # a slow consumer: the worker runs ahead (prefetch 16) past record 30 before the error is read
    loader = Loader(make_source(64), [FailOn({30})], batch_size=2, workers=workers, prefetch=16, shuffle=False)
    with pytest.raises(WorkerError) as info:
        for _ in loader:
            time.sleep(0.01)
    assert info.value.key == "row 30" and info.value.render().startswith("record row 30: ValueError: label 30 is cursed")
    assert "working on" not in info.value.render() and "skip bad records with on_error='skip'" in info.value.render()


def _sleep_forever(wid):
    time.sleep(3600)


def test_a_worker_slow_to_start_is_reported_as_slow_with_the_time_waited(no_leaks):
    # a fake clock: _check_timeouts(now) is a pure function of the time it is given
    with ProcessPool(functools.partial(_sleep_forever), workers=1, timeout=0.5) as pool:
        pool.submit(1)
        started = pool._seats[0].started
        assert pool._check_timeouts(started + 0.6) == started + pool_module.START_S  # not a task timeout
        with pytest.raises(WorkerTimeout) as info:
            pool._check_timeouts(started + pool_module.START_S + 1.5)
    text = str(info.value)
    assert "slow to start: not ready after 61.5 s" in text and "__main__" not in text and "import that fails" not in text


def test_yaml_aliases_to_collections_are_refused_before_they_grow():
    assert load_yaml("a: &x 3\nb: *x\n") == {"a": 3, "b": 3}  # a scalar alias cannot multiply
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    started = time.monotonic()
    for parse in (load_yaml, parse_param_str):
        with pytest.raises(Exception, match="alias|neither") as info:
            parse(bomb)
        assert len(str(info.value)) < 400
    assert time.monotonic() - started < 10  # walking the expanded bomb took > 20 s and 1.4 GB


def test_a_stream_file_that_is_not_text_or_too_large_names_the_file(tmp_path):
    (tmp_path / "s.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ValueError, match=r"s\.yaml: not a text \(UTF-8\) file, byte 0x89 at offset 0"):
        read_yaml_mapping(tmp_path / "s.yaml")
    (tmp_path / "big.yaml").write_text("source: " + "a" * 100_000)
    with pytest.raises(ValueError, match=r"big\.yaml: over 64 KB"):
        read_yaml_mapping(tmp_path / "big.yaml")


def test_cut_keeps_a_fixed_length_and_says_how_long_the_input_was():
    assert cut("short") == "short"
    text = cut("x" * 1_000_000)
    assert text.split(" ")[0] == "x" * (ECHO_CHARS - 3) + "..." and text.endswith("(1,000,000 characters)")


@pytest.mark.parametrize("values", [
    {"source": "a" * 1_000_000},
    {"source": "db", "mean_file": "m" * 1_000_000},
    {"source": "db", "mean_value": [1.0] * 100_000},
    {"source": "db", "crop_size": "c" * 1_000_000},
])
def test_library_errors_echo_a_huge_input_cut(tmp_path, values):
    from feedstock.fixtures.synthetic import make_raw_lmdb

    make_raw_lmdb(str(tmp_path / "db"), np.random.default_rng(0), 8, (3, 8, 8))
    values = {k: str(tmp_path / v) if k == "source" and v == "db" else v for k, v in values.items()}
    with pytest.raises(ValueError) as info:
        stream_from_mapping(values, form="param_str").build_loader("train").close()
    assert len(str(info.value)) < 300, str(info.value)[:500]


def test_param_str_and_stream_refuse_non_finite_numbers():
    for text in ("{'scale': float('nan')}", '{"scale": NaN}', "scale: .inf"):
        with pytest.raises(ValueError, match="scale|code"):
            stream_from_mapping(parse_param_str(text))
    with pytest.raises(ValueError, match="finite"):
        Stream(timeout=float("inf"))


def test_every_numeric_flag_of_every_command_refuses_nan_and_infinity():
    import argparse

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    checked = 0
    for name, command in commands.items():
        for action in command._actions:
            assert action.type is not float, (name, action.dest)  # a plain float() takes "nan" and "inf"
            if action.type is finite:
                checked += 1
                for text in ("nan", "inf", "-inf", "1e999"):
                    with pytest.raises(argparse.ArgumentTypeError, match="finite"):
                        action.type(text)
                assert action.type("2.5") == 2.5
    assert checked >= 10  # bench --seconds, train's and the stream's number flags
