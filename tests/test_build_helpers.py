"""Helpers for the build/CLI tests: an independent Datum wire parser and a way to run the subcommands.

The parser is written from caffe.proto's field numbers (docs/caffe-compat.md, "Datum and BlobProto"), not from
feedstock.caffe_pb, so the tests check the bytes we write against the reference.
"""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MY_COMMANDS = ["feedstock.cli.build_lmdb", "feedstock.cli.merge_lmdb", "feedstock.cli.compute_mean",
               "feedstock.cli.inspect_cmd", "feedstock.cli.verify"]


def _varint(buf: bytes, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def parse_datum_wire(value: bytes) -> Dict[str, object]:
    """Datum fields by tag byte: 0x08 channels, 0x10 height, 0x18 width, 0x22 data, 0x28 label,
    0x35 float_data (one unpacked float each), 0x38 encoded. ``tags`` lists the tags in wire order."""
    out: Dict[str, object] = {"tags": [], "float_data": []}
    names = {0x08: "channels", 0x10: "height", 0x18: "width", 0x28: "label", 0x38: "encoded"}
    pos = 0
    while pos < len(value):
        tag = value[pos]
        pos += 1
        out["tags"].append(tag)
        if tag in names:
            number, pos = _varint(value, pos)
            if tag == 0x28 and number >= 2**63:  # int32 label: negative values are 10-byte varints
                number -= 2**64
            out[names[tag]] = number
        elif tag == 0x22:
            length, pos = _varint(value, pos)
            out["data"] = value[pos:pos + length]
            pos += length
        elif tag == 0x35:
            out["float_data"].append(float(np.frombuffer(value[pos:pos + 4], dtype="<f4")[0]))
            pos += 4
        else:
            raise AssertionError(f"unexpected tag 0x{tag:02x} at byte {pos - 1}")
    return out


def raw_pixels(fields: Dict[str, object]) -> np.ndarray:
    """CHW uint8 pixels of a raw Datum parsed by :func:`parse_datum_wire`."""
    shape = (fields["channels"], fields["height"], fields["width"])
    return np.frombuffer(fields["data"], dtype=np.uint8).reshape(shape)


def read_db(path) -> List[Tuple[bytes, bytes]]:
    """Every (key, value) of an LMDB in key order, opened independently of feedstock's shared env."""
    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False, subdir=True)
    try:
        with env.begin() as txn:
            return [(bytes(k), bytes(v)) for k, v in txn.cursor()]
    finally:
        env.close()


def _parser():
    import argparse
    import importlib

    from feedstock.cli import main as cli_main

    wired = all(m in cli_main.SUBCOMMANDS for m in MY_COMMANDS)
    if wired:
        return cli_main.build_parser()
    parser = argparse.ArgumentParser(prog="feedstock")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command")
    for name in MY_COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def cli(argv: List[str]) -> int:
    """Run a subcommand in this process like ``feedstock.cli.main.main`` does (errors -> exit 1)."""
    args = _parser().parse_args([str(a) for a in argv])
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as e:
        print(f"feedstock {args.command}: error: {e}", file=sys.stderr)
        return 1


def cli_output(argv: List[str]) -> Tuple[int, str, str]:
    """(exit status, stdout, stderr) of :func:`cli`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(argv)
    return code, out.getvalue(), err.getvalue()


def cli_process(argv: List[str], **kwargs) -> subprocess.Popen:
    """Start the CLI in a new process group (so a test can SIGKILL the build and its workers)."""
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import test_build_helpers as h; "
            "sys.exit(h.cli(sys.argv[1:]))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), str(ROOT / "tests"))))
    return subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parent), *map(str, argv)],
                            env=env, start_new_session=True, **kwargs)


def test_wire_parser_reads_caffe_reference_bytes():
    """The reference raw datum of convert_imageset: 08 03 10 20 18 20 22 80 18 <3072 bytes> 28 01 38 00."""
    pixels = bytes(range(256)) * 12
    value = bytes([0x08, 3, 0x10, 32, 0x18, 32, 0x22, 0x80, 0x18]) + pixels + bytes([0x28, 1, 0x38, 0])
    fields = parse_datum_wire(value)
    assert fields["tags"] == [0x08, 0x10, 0x18, 0x22, 0x28, 0x38]
    assert (fields["channels"], fields["height"], fields["width"], fields["label"]) == (3, 32, 32, 1)
    assert fields["encoded"] == 0 and fields["data"] == pixels


def test_wire_parser_reads_unpacked_floats():
    value = bytes([0x08, 2, 0x10, 1, 0x18, 1]) + b"\x35" + np.float32(1.5).tobytes() + b"\x35" + \
        np.float32(-2.0).tobytes() + bytes([0x28, 7])
    fields = parse_datum_wire(value)
    assert fields["float_data"] == [1.5, -2.0] and fields["label"] == 7
