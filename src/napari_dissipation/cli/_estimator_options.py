"""The estimator's command-line arguments, generated from :mod:`napari_dissipation.options`."""

from __future__ import annotations

import argparse

from ..options import GROUPS, OPTIONS

__all__ = ["add_estimator_arguments", "estimator_options"]


def add_estimator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one argument per estimator option, in groups, with its default in the help."""
    groups = {key: parser.add_argument_group(f"estimator: {title}")
              for key, title in GROUPS.items()}
    for o in OPTIONS:
        flags = [o.cli_flag] + ([o.short] if o.short else [])
        default = o.none_means if o.default is None else f"{o.default:g}" \
            if isinstance(o.default, float) else str(o.default)
        unit = f" [{o.unit}]" if o.unit else ""
        groups[o.group].add_argument(
            *flags, dest=o.name, type=str if o.words else o.type, default=None, choices=o.choices,
            metavar=None if o.choices else o.cli_metavar,
            help=f"{o.help}{unit} (default: {default})")


def estimator_options(args: argparse.Namespace) -> dict:
    """The options given on the command line (the others keep their defaults)."""
    return {o.name: getattr(args, o.name) for o in OPTIONS
            if getattr(args, o.name, None) is not None}
