"""``napari-dissipation demo``: napari with a sample movie open and the plugin's widget docked.

The sample is opened through the plugin's own npe2 ``sample_data`` contribution and the widget
through its ``widgets`` contribution, exactly as File > Open Sample and the Plugins menu do,
so the demo shows what an installed plugin offers.  napari is imported only when the command
runs, never when the command line is built.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import InputError

PLUGIN = "napari-dissipation"
DEFAULT_SAMPLE = "bead_spring_2"
MAIN_WIDGET_CLASS = "DissipationWidget"


def register(subparsers) -> None:
    """Add the ``demo`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "demo",
        help="open napari with a sample movie and the dissipation widget docked",
        description=(
            "Open napari with one of the plugin's sample movies (simulated, with exact "
            "entropy production in the layer metadata) and dock the plugin's widget."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--sample",
        default=DEFAULT_SAMPLE,
        metavar="KEY",
        help="sample to open: a key such as bead_spring_2 or bead_spring_5, or a unique part "
        "of one (e.g. 'filament'); 'list' prints the keys",
    )
    parser.add_argument(
        "--no-widget", action="store_true", help="open the sample without docking the widget"
    )
    parser.set_defaults(func=run)


def _manifest():
    import npe2

    return npe2.PluginManifest.from_distribution(PLUGIN)


def sample_keys() -> dict[str, str]:
    """Return the plugin's sample data, ``{key: display name}``, from its manifest."""
    return {s.key: s.display_name for s in _manifest().contributions.sample_data or []}


def resolve_sample(name: str) -> str:
    """Return the sample key that ``name`` means.

    ``name`` is a key, or a unique part of one; case and ``-``/``_`` do not matter.

    Raises
    ------
    InputError
        If no key, or more than one, matches.
    """
    keys = list(sample_keys())
    wanted = name.strip().lower().replace("-", "_")
    if wanted in keys:
        return wanted
    matches = [k for k in keys if wanted and wanted in k]
    if len(matches) == 1:
        return matches[0]
    what = "is ambiguous" if matches else "is not a sample"
    raise InputError(f"--sample {name!r} {what}; choose one of: {', '.join(keys)}")


def main_widget_name() -> str | None:
    """Return the display name of the widget to dock, or None if the plugin has none.

    The widget whose class is ``DissipationWidget`` if the manifest contributes it,
    else the first widget contribution.
    """
    manifest = _manifest()
    widgets = manifest.contributions.widgets or []
    if not widgets:
        return None
    commands = {c.id: c for c in manifest.contributions.commands or []}
    for widget in widgets:
        command = commands.get(widget.command)
        if command is not None and (command.python_name or "").endswith(f":{MAIN_WIDGET_CLASS}"):
            return widget.display_name
    return widgets[0].display_name


def open_demo(viewer, *, sample: str = DEFAULT_SAMPLE, dock_widget: bool = True):
    """Open ``sample`` in ``viewer`` and dock the plugin's main widget.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer to fill.
    sample : str
        A sample key or a unique part of one (see :func:`resolve_sample`).
    dock_widget : bool
        Dock the plugin's main widget if the plugin contributes one.

    Returns
    -------
    layers : list of napari layers
        The layers the sample added.
    widget : QWidget or None
        The docked widget, or None when none was docked.
    """
    key = resolve_sample(sample)
    layers = viewer.open_sample(PLUGIN, key)
    widget = None
    name = main_widget_name() if dock_widget else None
    if name is not None:
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    if layers:
        viewer.layers.selection.active = layers[0]
        if widget is not None and hasattr(widget, "select_layer"):
            widget.select_layer(layers[0])
    if widget is not None:
        # Docking narrows the canvas after the sample was framed: let the layout settle,
        # then frame the movie again so that it is not cut off.
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()
        viewer.reset_view()
    return layers, widget


def _check_display() -> None:
    # Without a display Qt aborts the whole process with a core dump; say why instead.
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise InputError(
            "no display to open napari on (DISPLAY is not set); run it from a desktop "
            "session, or under a virtual display: xvfb-run -a napari-dissipation demo"
        )


def run(args: argparse.Namespace) -> int:
    """Open the viewer, fill it, and run napari's event loop until the window closes."""
    if args.sample.strip().lower() == "list":
        for key, title in sample_keys().items():
            print(f"{key}\t{title}")
        return 0
    resolve_sample(args.sample)  # a bad name fails before a window opens
    _check_display()
    try:
        import napari
        import qtpy  # noqa: F401  (napari's Qt layer: fails here without a Qt binding)
    except ImportError as exc:
        raise InputError(
            f"cannot start napari ({exc}); install a Qt binding with napari: "
            "pip install 'napari-dissipation[all]'"
        ) from None
    viewer = napari.Viewer(title="napari-dissipation demo")
    layers, widget = open_demo(viewer, sample=args.sample, dock_widget=not args.no_widget)
    shown = ", ".join(layer.name for layer in layers)
    print(f"opened {shown}" + ("" if widget is None else " with the dissipation widget docked"))
    napari.run()
    return 0
