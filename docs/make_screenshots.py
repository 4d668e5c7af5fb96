"""Take the documentation's screenshots from a real napari window.

Run from the repository root under a virtual X display::

    xvfb-run -a -s "-screen 0 1400x900x24" python docs/make_screenshots.py [SHOT ...]

Each SHOT is one of the names in ``SHOTS`` (all of them by default); the PNG files go to
``docs/images/``.  The viewer is filled through the same code as ``napari-dissipation demo``
(the plugin's sample data and widget contributions), so the pictures show what a user sees.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

IMAGES = Path(__file__).resolve().parent / "images"
WINDOW_SIZE = (1300, 800)


def _settle(seconds: float = 0.5) -> None:
    """Let Qt process events (layout, vispy draws) for a moment."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def _new_viewer():
    import napari

    viewer = napari.Viewer(title="napari-dissipation")
    viewer.window.resize(*WINDOW_SIZE)
    viewer.window._qt_window.show()
    return viewer


def _save(viewer, name: str) -> Path:
    _settle()
    path = IMAGES / name
    viewer.window.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")
    return path


def shot_sample(*, frame: int = 40) -> Path:
    """The 2-bead sample movie open in napari, at frame ``frame``, no widget docked."""
    from napari_dissipation.cli.demo import open_demo

    viewer = _new_viewer()
    layers, _ = open_demo(viewer, sample="bead_spring_2", dock_widget=False)
    viewer.dims.set_current_step(0, min(frame, layers[0].data.shape[0] - 1))
    viewer.reset_view()
    path = _save(viewer, "sample_bead_spring.png")
    viewer.close()
    return path


def shot_demo() -> Path:
    """What ``napari-dissipation demo`` opens: the 2-bead sample with the widget docked."""
    from napari_dissipation.cli.demo import open_demo

    viewer = _new_viewer()
    open_demo(viewer, sample="bead_spring_2")
    path = _save(viewer, "demo.png")
    viewer.close()
    return path


SHOTS = {"sample": shot_sample, "demo": shot_demo}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shots", nargs="*", metavar="SHOT", help=f"any of {', '.join(SHOTS)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.shots) - set(SHOTS))
    if unknown:
        parser.error(f"unknown shot(s) {', '.join(unknown)}; choose from {', '.join(SHOTS)}")
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name in args.shots or SHOTS:
        SHOTS[name]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
