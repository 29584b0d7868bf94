"""Option parsing and validation that several subcommands share: the parser that turns argparse errors into
:class:`~devbench.errors.UsageError`, the converters for seconds, counts, fractions and output formats, the
options spelled the same in several subcommands, and :func:`add_command`, the one way a subcommand is added.

A converter runs inside argparse, so a bad value is refused while parsing, before anything heavy is imported.
Nothing here imports TensorFlow or pandas.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from devbench.errors import UsageError, choose
from devbench.spec import DTYPES

Handler = Callable[[argparse.Namespace], int]
"""What every subcommand runs: the parsed options (plus ``argv``, the command line as typed) in, exit code out."""

FORMATS = ("table", "csv", "json")
"""Output formats of the commands that print a table (``--format``)."""


class UsageParser(argparse.ArgumentParser):
    """argparse that reports bad input as one UsageError line instead of usage text plus an error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


Subcommands = argparse._SubParsersAction
"""What ``add_subparsers`` returns (argparse has no public name for it)."""


def add_command(sub: Subcommands[UsageParser], name: str, handler: Handler, *, help: str,
                description: str) -> UsageParser:
    """Add subcommand ``name`` that runs ``handler``; every subcommand is added this way, so ``main`` has one
    dispatch for all of them."""
    parser = sub.add_parser(name, help=help, description=description)
    parser.set_defaults(handler=handler)
    return parser


def positive_float(name: str) -> Callable[[str], float]:
    """Converter for option ``name`` taking seconds: a positive, finite number."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{name} {text!r} is not a number; give positive seconds") from None
        if not value > 0 or value == float("inf"):
            raise UsageError(f"{name} {text!r} must be a positive, finite number of seconds")
        return value

    return parse


def positive_int(name: str) -> Callable[[str], int]:
    """Converter for option ``name`` taking a count: a whole number >= 1."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"{name} {text!r} is not a whole number; give an integer >= 1") from None
        if value < 1:
            raise UsageError(f"{name} {text!r} must be at least 1")
        return value

    return parse


def integer(name: str) -> Callable[[str], int]:
    """Converter for option ``name`` taking any whole number (a seed)."""

    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"{name} {text!r} is not a whole number") from None

    return parse


def fraction(name: str, *, low_inclusive: bool) -> Callable[[str], float]:
    """Converter for option ``name`` taking a fraction in [0, 1) (``low_inclusive``) or (0, 1)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{name} {text!r} is not a number") from None
        ok = (0 <= value < 1) if low_inclusive else (0 < value < 1)
        if not ok:
            raise UsageError(f"{name} {text!r} must be in {'[0, 1)' if low_inclusive else '(0, 1)'}")
        return value

    return parse


def output_format(text: str) -> str:
    """Converter for ``--format``: one of :data:`FORMATS`."""
    return choose("format", text, FORMATS)


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", type=output_format, default="table", help="table (default), csv or json")


def add_devices_option(parser: argparse.ArgumentParser, default: str) -> None:
    """``--devices``, kept as text: its spelling is checked by :func:`devbench.devices.check_names` (no TF),
    whether the devices exist only once TensorFlow lists them."""
    parser.add_argument("--devices", default=None, help=f"comma list like CPU:0,GPU:1, or 'all' (default: {default})")


def add_dtypes_option(parser: argparse.ArgumentParser) -> None:
    """``--dtypes``, kept as text and checked by the command (so its error comes in the command's order)."""
    parser.add_argument("--dtypes", default="float32", help=f"comma list of {', '.join(DTYPES)} (default float32)")
