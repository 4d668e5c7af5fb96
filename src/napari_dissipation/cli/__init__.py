"""Command line: ``napari-dissipation {simulate,fit,map,rerun,demo} ...``.

Each subcommand lives in its own module with a ``register(subparsers)`` function that
adds its parser and sets ``func``.  Errors in the user's input (:class:`InputError`)
become one line on stderr, with the flag that fixes them appended, and exit status 2;
nothing half-written is left behind
because every writer goes through :func:`napari_dissipation.io.atomic_output`.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from ..errors import InputError
from ._common import error_message

SUBCOMMANDS = ("simulate", "fit", "map", "rerun", "demo")
PROG = "napari-dissipation"


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser, one subparser per available subcommand."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Entropy production and dissipation maps from microscopy movies.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        try:
            module = import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the run's record
    try:
        result = args.func(args)
    except InputError as exc:
        print(f"{PROG}: error: {error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
