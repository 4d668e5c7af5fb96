"""``napari-dissipation rerun RUN/record.json --out NEWRUN``: run a recorded fit again.

Every ``fit`` writes ``RUN/record.json`` (:mod:`napari_dissipation.record`): versions,
every option, seeds, each input file with its SHA-256, dt and its source, the checks'
warnings and the command line.  ``rerun`` checks that every input file is still there
and unchanged (one line naming the first one that is not), then runs ``fit`` with the same
files, selection, dt and options into NEWRUN, and prints the recorded rate beside the new
one.  This module also holds what ``fit`` does with its inputs before training (notes on
files holding several movies, warnings on glued movies) and the record it writes.
"""

from __future__ import annotations

import sys

__all__ = ["register", "run", "input_checks", "fit_record"]

#: What ``fit`` reads from each file: recorded, and set again by ``rerun``.
_SELECTION = ("channel", "z", "series", "roi", "axes")


def register(subparsers) -> None:
    """Add the ``rerun`` subcommand."""
    p = subparsers.add_parser(
        "rerun", help="run a recorded fit again on the same, unchanged files",
        description="Run the fit recorded in RUN/record.json again: the same input files "
        "(checked unchanged by their SHA-256), selection, dt, options and seeds.")
    p.add_argument("record", metavar="RECORD",
                   help="record.json of an earlier run (or its run folder)")
    p.add_argument("--out", required=True, metavar="NEWRUN", help="run folder to create")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..options import OPTIONS
    from ..record import read_record, verify_inputs
    from . import build_parser

    record = read_record(args.record)
    paths = verify_inputs(record)
    fit_args = build_parser().parse_args(["fit", *map(str, paths), "--out", args.out])
    known = {o.name for o in OPTIONS}
    for name, value in record["options"].items():
        if name in known:
            setattr(fit_args, name, value)
    selection = record.get("selection") or {}
    for name in _SELECTION:
        value = selection.get(name)
        setattr(fit_args, name, tuple(value) if isinstance(value, list) else value)
    fit_args.dt = record.get("dt")
    fit_args.quiet = args.quiet
    fit_args.argv = list(getattr(args, "argv", None) or [])
    fit_args.rerun_of = str(args.record)
    status = fit_args.func(fit_args)
    old = record.get("result") or {}
    if old.get("ep_rate") is not None:
        lo, hi = old.get("ep_rate_ci") or (None, None)
        print(f"recorded run: EP rate {old['ep_rate']:.4g} k_B/s (95% CI {lo:.4g} to {hi:.4g})"
              if lo is not None else f"recorded run: EP rate {old['ep_rate']:.4g} k_B/s")
    return status


def input_checks(movies) -> list[str]:
    """Say what the inputs are and check them before training; return the warnings.

    Prints, on stderr, a note for each file holding several movies (how many, of how
    many frames) and a ``warning:`` line for each movie that looks like several movies
    glued together (:func:`napari_dissipation.io.glued.glued_warnings`).
    """
    from ..io import describe_inputs
    from ..io.glued import glued_warnings

    for line in describe_inputs(movies):
        print(f"note: {line}", file=sys.stderr)
    warnings = []
    for m in movies:
        warnings += glued_warnings(m.data, name=m.name)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return warnings


def fit_record(args, movies, dt, dt_source, est, checks, result) -> dict:
    """The record of a ``fit`` run: :func:`napari_dissipation.record.run_record`."""
    from ..record import run_record
    from . import PROG

    options = est.config.to_dict() if hasattr(est.config, "to_dict") else {}
    warnings = list(checks) + [w for w in getattr(result, "warnings", None) or []
                               if w not in checks]
    lo, hi = result.ep_rate_ci
    selection = {k: getattr(args, k, None) for k in _SELECTION}
    argv = getattr(args, "argv", None)
    record = run_record(
        options, movies, dt, dt_source, warnings, command=[PROG, *argv] if argv else None,
        selection=selection, result={"ep_rate": result.ep_rate, "ep_rate_ci": [lo, hi],
                                     "frames_per_input": result.frames_per_input})
    if getattr(args, "rerun_of", None):
        record["rerun_of"] = args.rerun_of
    return record
