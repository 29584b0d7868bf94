"""Command line: parse, validate, call the library, print.

:func:`build_parser` adds every subcommand through :func:`devbench.cli.options.add_command`, which records
its handler (one signature: ``handler(args) -> exit code``, see :data:`~devbench.cli.options.Handler`), and
:func:`main` runs it: one dispatch for all. The subcommands live by what they work on: :mod:`.sweep`
(measuring), :mod:`.machine` (``devices``, ``ops``, ``calibrate``), :mod:`.results` (``crossover``,
``plot``, ``report``, ``refine``, ``compare``) and :mod:`.fleet` (``merge``, ``fleet``, ``export``: beyond one
machine), :mod:`.dataset` (``dataset add``, ``dataset list``), :mod:`.advise` (``advise``: which device to
use) and :mod:`.history` (``history``: one machine's runs over time); what they share is in :mod:`.options`.

Bad input raises UsageError anywhere below; :func:`main` prints it as one line on stderr and returns 2.
Anything else is a bug and keeps its traceback. The frameworks, pandas and matplotlib are imported inside the
commands that need them, so ``devbench --help``, ``devbench ops`` and ``devbench --version`` stay fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from devbench import __version__
from devbench.cli import advise, dataset, fleet, history, machine, results, sweep
from devbench.cli.options import Handler, UsageParser
from devbench.errors import UsageError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
"""128 + SIGINT, what shells report for a process Ctrl-C ended (SIGTERM gives 143)."""


def build_parser() -> UsageParser:
    parser = UsageParser(
        prog="devbench",
        description="Device-placement microbenchmarks for TensorFlow, JAX, PyTorch and numpy: for each op, "
        "size and dtype, which device is faster, and where is the crossover?",
    )
    parser.add_argument("--version", action="version", version=f"devbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=UsageParser)
    sweep.register(sub)
    machine.register(sub)
    results.register(sub)
    fleet.register(sub)
    dataset.register(sub)
    advise.register(sub)
    history.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        args.argv = tuple(argv)  # the command line as typed: a sweep records it and checks it against --resume
        handler: Handler = args.handler
        return handler(args)
    except UsageError as exc:
        print(f"devbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        # A sweep's SweepInterrupted carries its exit code (128 + signal) and how to resume; a Ctrl-C anywhere
        # else (say, while TensorFlow loads) has nothing to save.
        print(getattr(exc, "message", "devbench: interrupted"), file=sys.stderr)
        exit_code: int = getattr(exc, "exit_code", EXIT_INTERRUPTED)
        # Leave now rather than return: interpreter shutdown resets signal handlers to the defaults and then
        # spends about a second tearing TensorFlow down, so a second Ctrl-C in that window would kill the
        # process with -SIGINT instead of exiting with this code. Everything measured is already on disk.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)


__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "main"]
