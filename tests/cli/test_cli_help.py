"""Every subcommand's ``--help`` matches the code: its examples parse with the real parser, every flag
says what it does, and the words for the data match the data."""
from __future__ import annotations

import argparse
import re
import shlex
from typing import Dict, List

import pytest

from feedstock.cli.main import build_parser

PARSER = build_parser()


def subparsers(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


COMMANDS = subparsers(PARSER)


def examples(text: str) -> List[str]:
    """Lines that run ``feedstock ...`` (continued by a trailing backslash), comments cut off."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending:
            pending += " " + line
        elif line.startswith("feedstock ") or line == "feedstock":
            pending = line
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        out.append(pending)
        pending = ""
    assert not pending, f"an example ends with a backslash: {pending!r}"
    return out


def parse_example(line: str) -> argparse.Namespace:
    code = line.split("#")[0].rstrip()
    assert not re.search(r"\S {3,}-", code), f"an example ran two lines together: {line!r}"
    tokens = shlex.split(line, comments=True)
    assert tokens[0] == "feedstock"
    try:
        return PARSER.parse_args(tokens[1:])
    except SystemExit as e:
        raise AssertionError(f"the example does not parse: {line!r}") from e


def test_the_helper_finds_and_joins_examples():
    text = "intro\n  feedstock a --x 1 \\\n      --y 2   # note\n  not an example\n  feedstock b\n"
    assert examples(text) == ["feedstock a --x 1 --y 2   # note", "feedstock b"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_example_in_the_help_parses(name, capsys):
    text = COMMANDS[name].format_help()
    for line in examples(text):
        parse_example(line)


def test_a_broken_example_is_caught():
    with pytest.raises(AssertionError, match="ran two lines together"):
        parse_example("feedstock train --model lenet --crop-size 64       --mirror")  # a lost backslash
    with pytest.raises(AssertionError, match="does not parse"):
        parse_example("feedstock train --model lenet --no-such-flag")
    with pytest.raises(AssertionError, match="does not parse"):
        parse_example("feedstock bench x --workers")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_flag_has_help(name):
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in COMMANDS[name]._actions
               if a.help is None or (a.help != argparse.SUPPRESS and not a.help.strip())]
    assert not missing, f"feedstock {name}: no help text for {missing}"
    assert COMMANDS[name].description, f"feedstock {name} has no description"


def test_the_top_level_help_names_every_command_and_the_version(capsys):
    text = PARSER.format_help()
    for name in COMMANDS:
        assert name in text
    with pytest.raises(SystemExit) as e:
        PARSER.parse_args(["--version"])
    assert e.value.code == 0
    from feedstock import __version__

    assert capsys.readouterr().out.strip() == f"feedstock {__version__}"


def _help(name: str) -> str:
    return " ".join(COMMANDS[name].format_help().split())  # argparse wraps lines anywhere


def test_the_words_for_the_data_match_the_data():
    from feedstock.trainer.datasets import load_fashion_mnist
    from feedstock.trainer.models import MODELS

    demo = _help("demo") + " " + PARSER.format_help()
    assert "Fashion-MNIST" in demo and "digits" not in demo.lower()
    assert len(load_fashion_mnist()[0]) == 4000  # the bundled sample the help describes
    for model in MODELS:  # the summary line of train names every model it trains
        assert model in _help("train")
        train_line = next(line for line in PARSER.format_help().splitlines() if line.strip().startswith("train "))
        assert model.split("_")[0] in train_line.lower().replace("lenet", "lenet ").replace("fcn", "fcn_small")


def test_mirror_help_says_caffe_flips_in_test_too():
    """Caffe's DataTransformer draws do_mirror = mirror && Rand(2) in every phase (reference, section 5)."""
    import numpy as np

    from feedstock.transforms import CaffeTransform

    for name in ("train", "bench", "serve", "inspect"):
        text = _help(name)
        assert "random horizontal flip in TRAIN" not in text
        assert re.search(r"--mirror\s+random horizontal flip, in TEST too[^-]*\(pairs: TRAIN only\)", text), name
    # and the code does flip in TEST: some of 64 draws are mirrored
    t = CaffeTransform(phase="TEST", mirror=True)
    x = {"data": np.arange(6, dtype=np.uint8).reshape(1, 1, 6)}
    flipped = [bool(t(x, np.random.default_rng(i))["data"][0, 0, 0] == 5) for i in range(64)]
    assert any(flipped) and not all(flipped)
    # segmentation pairs flip in TRAIN only, as the help says
    from feedstock.stream import Stream
    from feedstock.transforms.mirror import Mirror
    from feedstock.transforms.pairs import pairs_transforms

    stream = Stream(source="x", source_type="pairs", crop_size=4, mirror=True)
    assert any(isinstance(t, Mirror) for t in pairs_transforms(stream, "TRAIN", None))
    assert not any(isinstance(t, Mirror) for t in pairs_transforms(stream, "TEST", None))


def test_predict_out_names_both_outputs():
    text = _help("predict")
    assert re.search(r"--out OUT .*CSV.*folder", text)


def test_build_lmdb_shows_the_stream_spellings_with_caffes_as_aliases():
    text = _help("build-lmdb")
    for flags in ("--source-type {auto,folder,list,csv,hdf5,pairs}, --kind",
                  "--root-folder ROOT, --root ROOT", "--new-height RESIZE_HEIGHT, --resize-height",
                  "--new-width RESIZE_WIDTH, --resize-width"):
        assert flags in text, flags
    a = PARSER.parse_args(["build-lmdb", "s", "o", "--kind", "list", "--root", "r/", "--resize-height", "3",
                           "--resize-width", "4"])
    b = PARSER.parse_args(["build-lmdb", "s", "o", "--source-type", "list", "--root-folder", "r/",
                           "--new-height", "3", "--new-width", "4"])
    assert vars(a) == vars(b) and (b.kind, b.root, b.resize_height, b.resize_width) == ("list", "r/", 3, 4)


def test_the_same_flag_offers_the_same_choices_everywhere():
    seen: Dict[str, Dict[str, tuple]] = {}
    for name, parser in COMMANDS.items():
        for action in parser._actions:
            if action.choices is not None and action.option_strings:
                seen.setdefault(action.option_strings[0], {})[name] = tuple(action.choices)
    # --source-type in build-lmdb leaves out lmdb (the output, never a source it converts); all else agree
    allowed = {("--source-type", "build-lmdb")}
    for flag, by_command in seen.items():
        values = {v for (cmd, v) in by_command.items() if (flag, cmd) not in allowed}
        assert len(values) <= 1, f"{flag} offers different choices: {by_command}"
    assert set(seen["--start-method"]["build-lmdb"]) == {"auto", "fork", "spawn", "forkserver"}
