"""Entry point of the ``feedstock`` command: dispatches to subcommand modules.

Each subcommand module defines ``register(subparsers)`` which adds its parser
and sets ``func`` to a callable ``(args) -> int`` exit status.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from typing import Dict, List, NoReturn, Optional

from ..stream.forms import config_source, finite
from .env_errors import cut_tokens, describe, one_line
from .progress import logging_redirect

# Subcommand modules, in the order --help lists them.
SUBCOMMANDS = [
    "feedstock.cli.demo",
    "feedstock.cli.build_lmdb",
    "feedstock.cli.merge_lmdb",
    "feedstock.cli.compute_mean",
    "feedstock.cli.inspect_cmd",
    "feedstock.cli.verify",
    "feedstock.cli.train",
    "feedstock.cli.predict",
    "feedstock.cli.serve",
    "feedstock.cli.bench",
]


def package_version() -> str:
    """The installed distribution's version (package metadata); the source tree's when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("feedstock")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


class Parser(argparse.ArgumentParser):
    """A usage error is the one error line too (``feedstock CMD: error: WHAT: see --help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {cut_tokens(one_line(message))}: see `{self.prog} --help`\n")


def _finite_numbers(parser: argparse.ArgumentParser) -> None:
    """Every float flag of every command refuses NaN and infinities (``bench --seconds=inf`` never ended)."""
    for action in parser._actions:
        if action.type is float:
            action.type = finite
        if isinstance(action, argparse._SubParsersAction):
            for command in set(action.choices.values()):
                _finite_numbers(command)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="feedstock", description="Keeps neural-network trainers fed.")
    verbose_help = "log debug messages; show the traceback of an error"
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    parser.add_argument("--version", action="version", version=f"feedstock {package_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    for command in set(sub.choices.values()):  # `feedstock CMD ... -v` too; SUPPRESS keeps a global -v
        try:
            command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                 help=verbose_help)
        except argparse.ArgumentError:  # the command has its own -v
            pass
    _finite_numbers(parser)
    return parser


def _source_of_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A ``source:`` in ``--config`` is the SOURCE (train: ``--train``) of every command; one given overrides it."""
    dest = "train" if args.command == "train" else "source"
    if hasattr(args, dest) and getattr(args, dest) is None:
        setattr(args, dest, config_source(args))
    if getattr(args, "needs_source", False) and not args.source:
        command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
        command.error("give a SOURCE, or a `source:` key in the --config file")


def command_options(parser: argparse.ArgumentParser, command: str) -> Dict[str, argparse.Action]:
    """The arguments of ``feedstock COMMAND`` by ``dest``: an error spells a setting by its flag."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions if a.dest != argparse.SUPPRESS}


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        _source_of_config(args, parser)
        with logging_redirect():  # log lines above a progress bar, never through it
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # Environment and input errors (disk full, permissions, a missing path, LMDB, a port in
        # use): one line naming the path or endpoint and what to do; the traceback only with -v.
        message = describe(e, args, command_options(parser, args.command))
        if message is None:
            raise  # a bug: the traceback is the useful report
        if args.verbose:
            traceback.print_exc()
        print(f"feedstock {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
