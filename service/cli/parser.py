"""The ``facerec`` argument parser: each command with the options that apply to it, help for every
argument and an example. Usage errors become :class:`~service.errors.UsageError`, so ``--json``
callers get them as JSON too."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from service.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        error = UsageError(f"{message} (see `{self.prog} --help`)")
        error.usage = self.format_usage()
        raise error


class Commands:
    """Adds subcommands to a parser; ``detects`` marks those that run face detection."""

    def __init__(self, parser: argparse.ArgumentParser, base: argparse.ArgumentParser,
                 detection: argparse.ArgumentParser, title: str = "COMMAND"):
        self._sub = parser.add_subparsers(dest=f"command_{id(parser)}", required=True, metavar=title,
                                          parser_class=_Parser)
        self._base, self._detection = base, detection

    def add(self, name: str, handler: Callable, help: str, example: str, detects: bool = False,
            description: str | None = None) -> argparse.ArgumentParser:
        parents = [self._base] + ([self._detection] if detects else [])
        command = self._sub.add_parser(name, parents=parents, help=help, description=description or help,
                                       epilog=f"example:\n  {example}",
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        command.set_defaults(handler=handler)
        return command

    def group(self, name: str, help: str) -> "Commands":
        """A command with its own subcommands (``facerec people list``)."""
        parser = self._sub.add_parser(name, help=help, description=help)
        return Commands(parser, self._base, self._detection, title="ACTION")


def build_parser() -> argparse.ArgumentParser:
    from service.cli import audit, decide, enroll, keys, people, tools, train, upkeep

    base = argparse.ArgumentParser(add_help=False)
    base.add_argument("--config", type=Path, help="config file (default: FACEREC_CONFIG or the project's config.yaml)")
    base.add_argument("--home", type=Path, help="data home holding the roster (default: FACEREC_HOME or config)")
    base.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    base.add_argument("-v", "--verbose", action="store_true", help="log what happens on stderr")
    detection = argparse.ArgumentParser(add_help=False)
    detection.add_argument("--no-detect", action="store_true",
                           help="photos are face crops already: skip detection and take each whole")

    parser = _Parser(prog="facerec", description="Face verification and recognition with FaceNet.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = Commands(parser, base, detection)
    for module in (enroll, decide, people, audit, upkeep, keys, tools, train):
        module.register(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facerec")
    except PackageNotFoundError:
        return "(not installed)"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def threshold(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
