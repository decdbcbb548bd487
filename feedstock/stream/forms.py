"""The three forms of a stream definition: command-line flags, a param_str and a YAML file.

Each parser turns its form into a :class:`~feedstock.stream.Stream`; a bad value's
error names the key as that form spells it (``--batch-size``, ``param_str key
'batch_size'``, ``stream.yaml: key 'batch_size'``).
"""
from __future__ import annotations

import argparse
import ast
import functools
import json
import logging
import math
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Type, Union

from ..loaders.strings import cut
from ..shard import check_shard
from .check import ENGINES, SOURCE_TYPES, START_METHODS, StreamKeyError, echo
from .definition import STREAM_KEYS, Stream

if TYPE_CHECKING:
    import yaml

# ----- mappings: param_str and YAML ----------------------------------------------------------------
OLD_KEYS = ("rank", "world_size")  # the old spelling of shard: accepted, warned (StreamKeys)


def check_keys(mapping: Mapping[str, object], valid: Sequence[str], required: Sequence[str], what: str) -> None:
    """Unknown or missing keys raise one error that lists the valid keys."""
    unknown = sorted(echo(k) if not isinstance(k, str) or len(k) > 60 else k for k in mapping if k not in valid)
    missing = [k for k in required if k not in mapping]
    if unknown or missing:
        parts = ([f"unknown keys {unknown[:20]}"] if unknown else []) + ([f"missing keys {missing}"] if missing else [])
        raise ValueError(f"{what}: {'; '.join(parts)}; valid keys: {', '.join(valid)} "
                         f"(required: {', '.join(required) or 'none'})")


def stream_from_mapping(mapping: Mapping[str, object], *, form: str = "param_str",
                        base: Optional[Stream] = None) -> Stream:
    """A Stream from a dict of its keys (over ``base``'s values); errors name ``form`` and the key."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{form} must be a mapping of stream keys, got {type(mapping).__name__}")
    check_keys({k: v for k, v in mapping.items() if k not in OLD_KEYS}, STREAM_KEYS, (), form)
    values = dict(mapping)
    for key in ("mean_value", "scales", "to_range"):  # YAML/JSON lists; tuples inside a Stream
        value = values.get(key)
        if isinstance(value, list):
            values[key] = tuple(value)
    try:
        return (base or Stream()).replace(**values)
    except StreamKeyError as e:
        raise ValueError(f"{form} key {e}") from None


def parse_param_str(text: object) -> Dict[str, object]:
    """A dict from a Python dict literal, JSON or YAML; never evaluates code."""
    import yaml

    if text is None or not str(text).strip():
        return {}
    text = str(text)
    _refuse_code(text)
    for parse in (ast.literal_eval, json.loads, load_yaml):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, yaml.YAMLError):
            continue
        if isinstance(value, dict):
            return value
        raise ValueError(f"param_str must be a dict (Python literal, JSON or YAML), "
                         f"got {type(value).__name__}: {echo(text)}")
    raise ValueError(f"param_str is neither a Python dict literal, JSON nor YAML: {echo(text)}")


def _refuse_code(text: str) -> None:
    """Name the problem when param_str is Python code rather than a literal."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return  # not Python: JSON or YAML may still parse it
    for node in ast.walk(tree):
        # Only calls and lambdas: a YAML flow mapping like {source: a.lmdb} parses as Python too.
        if isinstance(node, (ast.Call, ast.Lambda)):
            raise ValueError(f"param_str must be a literal dict; it contains code (a {type(node).__name__}), "
                             f"which is never evaluated: {echo(text)}")


MAX_STREAM_FILE = 64 << 10  # bytes: a stream file is a few keys (parsing 300 KB of YAML takes seconds)


@functools.lru_cache(maxsize=1)
def _loader() -> Type[yaml.SafeLoader]:
    """yaml.SafeLoader that refuses an alias to a list or mapping as it composes it: a 300-byte file
    of nested aliases (a "billion laughs") would otherwise grow into billions of items when walked.
    Aliases to scalars cannot multiply and stay allowed."""
    import yaml

    class StreamLoader(yaml.SafeLoader):
        def compose_node(self, parent: Optional[yaml.Node], index: int) -> Optional[yaml.Node]:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                target = self.anchors.get(event.anchor)
                if target is not None and not isinstance(target, yaml.ScalarNode):
                    raise yaml.composer.ComposerError(
                        None, None, f"alias *{cut(event.anchor, 40)} repeats a list or mapping, which a stream "
                        "file may not do (nested aliases can grow without bound): write the values out",
                        event.start_mark)
            return super().compose_node(parent, index)

    return StreamLoader


def load_yaml(text: str) -> object:
    """``yaml.safe_load`` with aliases to lists and mappings refused (see :func:`_loader`)."""
    import yaml

    return yaml.load(text, Loader=_loader())  # noqa: S506  (a SafeLoader subclass)


def read_yaml_mapping(path: str | os.PathLike) -> Dict[str, object]:
    """The mapping in a YAML stream file; errors name the file (cut: a path may be huge)."""
    import yaml

    name = cut(os.fspath(path))
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STREAM_FILE + 1)
    except OSError as e:
        raise ValueError(f"cannot read stream file {name!r}: {e.strerror or e}: check the path") from None
    if len(data) > MAX_STREAM_FILE:
        raise ValueError(f"{name}: over {MAX_STREAM_FILE // 1024} KB, too large for a stream file of keys: "
                         "give the YAML file of stream keys")
    try:
        value = load_yaml(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: not a text (UTF-8) file, byte {data[e.start]:#04x} at offset {e.start}: "
                         "give the YAML file of stream keys") from None
    except yaml.MarkedYAMLError as e:  # the problem and its line, not the parser's quote of the text
        where = f" at line {e.problem_mark.line + 1}" if e.problem_mark is not None else ""
        raise ValueError(f"{name}: not valid YAML{where}: {cut(e.problem or one_line_of(e), 200)}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{name}: not valid YAML: {cut(one_line_of(e), 200)}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{name}: a stream file holds a mapping of stream keys, got {type(value).__name__}")
    return value


def one_line_of(error: BaseException) -> str:
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def stream_from_yaml(path: str | os.PathLike, *, base: Optional[Stream] = None) -> Stream:
    """A Stream from a YAML file of its keys (``source: train_lmdb``, ``crop_size: 28``, ...)."""
    return stream_from_mapping(read_yaml_mapping(path), form=cut(os.fspath(path)), base=base)


# ----- command-line flags ----------------------------------------------------------------------------
MAX_NUMBERS = 64  # values in one list flag (per-channel means, scales): more is never a stream setting


def finite(text: str) -> float:
    """A flag's number: NaN and infinities are refused (``--seconds=inf`` would never end)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{cut(repr(text))}: expected a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{cut(repr(text))}: expected a finite number")
    return value


def _numbers(text: str) -> Tuple[float, ...]:
    parts = text.split(",")
    if len(parts) > MAX_NUMBERS:
        raise argparse.ArgumentTypeError(f"{len(parts):,} values ({cut(repr(text), 40)}): expected at most "
                                         f"{MAX_NUMBERS} numbers separated by commas")
    try:
        return tuple(finite(v) for v in parts)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{cut(repr(text))}: expected finite numbers separated by commas") from None


def _pair(text: str) -> Tuple[float, ...]:
    values = _numbers(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"{cut(repr(text))}: expected LO,HI")
    return values


def _workers(text: str) -> Union[int, str]:
    if text == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{cut(repr(text))}: expected a number of workers or 'auto'") from None


def _shard(text: str) -> Tuple[int, int]:
    try:
        return check_shard(text, "--shard")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _timeout(text: str) -> Optional[float]:
    return None if text in ("none", "None", "0") else finite(text)


_ON = dict(action="store_const", const=True)
# flag -> (dest key, argparse keywords, help)
_FLAGS: Tuple[Tuple[str, str, Dict[str, Any], str], ...] = (
    ("--source-type", "source_type", {"choices": SOURCE_TYPES}, "source format (default: guessed from the path)"),
    ("--root-folder", "root_folder", {}, "prefix of a list file's paths (Caffe's root_folder)"),
    ("--masks", "masks", {}, "pairs: the mask folder (matched by file stem) or the label LMDB"),
    ("--label-column", "label_column", {}, "CSV: the label column (default: target)"),
    ("--classes", "classes", {}, "CSV, folders, list files: the class list (a build's labels.txt or its folder): codes follow it"),
    ("--batch-size", "batch_size", {"type": int}, "samples per batch (default 64)"),
    ("--shuffle", "shuffle", {"action": argparse.BooleanOptionalAction}, "reshuffle every epoch"),
    ("--seed", "seed", {"type": int}, "seed of the order and the augmentation draws"),
    ("--drop-last", "drop_last", {"action": argparse.BooleanOptionalAction}, "drop each epoch's short batch"),
    ("--workers", "workers", {"type": _workers}, "worker processes, 0 (in-process) or auto (default 2)"),
    ("--prefetch", "prefetch", {"type": int}, "batch slots in shared memory (default 4)"),
    ("--on-error", "on_error", {"choices": ("raise", "skip")}, "a bad record: raise, or skip and report"),
    ("--max-bad-fraction", "max_bad_fraction", {"type": finite}, "with skip: most bad records per epoch"),
    ("--timeout", "timeout", {"type": _timeout}, "seconds a worker may take per task (none: no limit)"),
    ("--start-method", "start_method", {"choices": START_METHODS}, "worker start method"),
    ("--shard", "shard", {"type": _shard, "metavar": "i/n"},
     "this trainer's share of the samples: shard i of n (data-parallel training; default 0/1)"),
    ("--rank", "rank", {"type": int}, "deprecated: --shard RANK/WORLD_SIZE"),
    ("--world-size", "world_size", {"type": int}, "deprecated: --shard RANK/WORLD_SIZE"),
    ("--engine", "engine", {"choices": ENGINES}, "who makes the batches: local worker processes, or ray actors "
     "(same batches; pip install 'feedstock[ray]')"),
    ("--address", "address", {}, "--engine ray: the Ray cluster (HEAD:6379 or auto; default: a local Ray "
     "instance with --workers CPUs)"),
    ("--crop-size", "crop_size", {"type": int}, "square crop: random in TRAIN, centre in TEST"),
    ("--mirror", "mirror", _ON, "random horizontal flip, in TEST too as Caffe's transformer does (pairs: TRAIN only)"),
    ("--mean-file", "mean_file", {}, "mean image (.binaryproto or .npy) to subtract"),
    ("--mean-value", "mean_value", {"type": _numbers}, "per-channel means to subtract, e.g. 104,117,123"),
    ("--scale", "scale", {"type": finite}, "multiply after the mean subtraction (Caffe's scale)"),
    ("--new-height", "new_height", {"type": int}, "resize images to this height (with --new-width)"),
    ("--new-width", "new_width", {"type": int}, "resize images to this width"),
    ("--fast-decode", "decode_scale", {"action": "store_const", "const": "auto"},
     "decode JPEGs at 1/2, 1/4 or 1/8 scale when --new-height/--new-width shrink them 2x or more "
     "(decode_scale: auto; faster, pixels differ from Caffe's by a few grey levels)"),
    ("--force-color", "force_color", _ON, "decode encoded Datums as 3 channels"),
    ("--force-gray", "force_gray", _ON, "decode encoded Datums as 1 channel"),
    ("--scales", "scales", {"type": _numbers}, "pairs: multiscale factors, e.g. 0.6,1,1.4"),
    ("--pad-value", "pad_value", {"type": finite}, "pairs: the image's pad value"),
    ("--ignore-label", "ignore_label", {"type": int}, "pairs: the mask's pad value, ignored by loss/IoU (255)"),
    ("--occlude", "occlude", _ON, "blank a random quarter-size square in TRAIN (DIGITS)"),
    ("--to-range", "to_range", {"type": _pair, "metavar": "LO,HI"},
     "map pixel values 0..255 onto LO,HI (write --to-range=-1,1: a leading minus reads as a flag)"),
)
FLAG_OF = {dest: flag for flag, dest, _, _ in _FLAGS} | {"is_color": "--gray", "source": "SOURCE"}


def add_stream_arguments(parser: argparse.ArgumentParser, *, source: bool = True,
                         skip: Sequence[str] = ()) -> argparse._ArgumentGroup:
    """The one argument group every command describes its stream with (``skip``: keys a command
    sets itself). Defaults are None here: the command's defaults and ``--config`` fill the rest."""
    g = parser.add_argument_group("the stream (the same flags for train, serve, bench, ...)")
    if source:  # optional here: a `source:` key in --config names it too (the command checks one is given)
        g.add_argument("source", metavar="SOURCE", nargs="?",
                       help="LMDB, list file, image folder, CSV, HDF5 or images of pairs (or --config's source:)")
        parser.set_defaults(needs_source=True)
    g.add_argument("--config", metavar="STREAM.yaml", help="YAML file of stream keys; flags given override it")
    g.add_argument("--gray", dest="gray", default=None, action="store_const", const=True,
                   help="images as one grey channel (Caffe's is_color: false)")
    for flag, dest, kwargs, text in _FLAGS:
        if dest not in skip:
            g.add_argument(flag, dest=dest, default=None, help=text, **kwargs)
    return g


def stream_from_args(args: argparse.Namespace, *, source: Optional[str] = None,
                     defaults: Optional[Mapping[str, object]] = None) -> Stream:
    """Stream defaults < ``defaults`` (the command's own) < ``--config`` < the flags given."""
    stream = Stream() if not defaults else _apply(Stream(), dict(defaults), lambda e: f"default {e}")
    config = getattr(args, "config", None)
    if config:
        mapping = read_yaml_mapping(config)
        stream = stream_from_mapping(mapping, form=cut(os.fspath(config)), base=stream)
        args.config_keys = sorted(k for k in mapping if isinstance(k, str))  # errors spell these as keys
    given = {dest: getattr(args, dest) for _, dest, _, _ in _FLAGS if getattr(args, dest, None) is not None}
    if getattr(args, "gray", None):
        given["is_color"] = False
    path = source if source is not None else getattr(args, "source", None)
    if path is not None:
        given["source"] = os.fspath(path)
    if "rank" in given or "world_size" in given:  # a command line's warning is a line on stderr
        logging.getLogger("feedstock").warning("deprecated: --rank/--world-size; use --shard RANK/WORLD_SIZE")
    args.flag_keys = sorted(given)  # ... and these as flags
    return _apply(stream, given, _flag_error)


def config_source(args: argparse.Namespace) -> Optional[str]:
    """The ``source:`` of ``--config`` (None without one): every command's SOURCE when none is given."""
    config = getattr(args, "config", None)
    source = read_yaml_mapping(config).get("source") if config else None
    return None if source is None else str(source)


def _flag_error(e: StreamKeyError) -> str:
    return f"{FLAG_OF.get(e.key, e.key)}{e.spelled(_flag_spelling)}"


def _flag_spelling(key: str, value: Optional[str]) -> str:
    """Another key a flag's error names, as its flag (``--new-width=0``)."""
    flag = FLAG_OF.get(key, key)
    return flag if value is None else f"{flag}={value.strip(chr(39))}"


def _apply(stream: Stream, values: Mapping[str, object], describe: Callable[[StreamKeyError], str]) -> Stream:
    try:
        return stream.replace(**values)
    except StreamKeyError as e:
        raise ValueError(describe(e)) from None
