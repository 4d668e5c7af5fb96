"""Screenshots of the dissipation widget at work, from a real napari window.

Run from the repository root under a virtual X display::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_widget_screenshots.py [SHOT ...]

SHOT is ``bead_spring`` (the 2-bead sample: ``widget_training.png`` while training,
then ``widget_density_bead_spring.png`` (the time-averaged map, what a result shows
first, with its colour bar), ``widget_overlay_bead_spring.png`` (the map of one
transition over the movie, contrast "this frame") and ``widget_trace.png`` (the EP trace
and, beside it, the rate by window length that chose k).  A result the code flags (a
lower bound, a warning, nothing learnt) is refused: no shot shows it as a result.
The viewer is filled the way ``napari-dissipation demo`` fills it (the plugin's
sample-data and widget contributions) and the widget is driven through its Train button,
so the pictures show what a user sees after one click.  Training uses the widget's
defaults except for the time budget (``--seconds``).

There is no filament-network shot: one click on the 400-frame filament sample does not
give a rate to trust (an earlier shot showed 36 k_B/s against the exact 5.93, with a
diverging validation objective); docs/maps.md shows the filament maps from 120 movies.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

IMAGES = Path(__file__).resolve().parent / "images"
WINDOW_SIZE = (1500, 950)


def _settle(seconds: float = 0.5) -> None:
    """Let Qt process events (layout, vispy draws, worker signals) for a while."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def _wait(condition, *, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        _settle(0.1)


def _viewer_with(sample: str):
    import napari

    from napari_dissipation.cli.demo import open_demo

    viewer = napari.Viewer(title="napari-dissipation")
    viewer.window.resize(*WINDOW_SIZE)
    viewer.window._qt_window.show()
    layers, widget = open_demo(viewer, sample=sample)
    _settle(1.0)
    viewer.reset_view()
    return viewer, layers[0], widget


def _save_window(viewer, name: str) -> Path:
    _settle(0.8)
    path = IMAGES / name
    viewer.window.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")
    return path


def _train(viewer, widget, *, seconds: float, during: str | None = None) -> None:
    """Press Train; optionally take ``during`` half-way through; wait for the result."""
    widget.set_options(max_seconds=seconds)
    start = time.monotonic()
    widget.run_panel.train_button.native.click()
    if during is not None:
        _wait(lambda: len(widget.training_plot.rate) >= 3
              and widget.training_plot.iterations
              and time.monotonic() - start >= 0.5 * seconds,
              timeout=seconds + 120, what="training progress")
        widget.training_plot.redraw()
        _save_window(viewer, during)
    # the rate first, then the maps in the background: wait for both
    _wait(lambda: widget.worker is None and widget.result is not None
          and widget.result.has_density and widget.density_layer is not None,
          timeout=seconds + 600, what="the result and its maps")
    _settle(1.0)  # the per-transition layer comes a turn of the event loop later
    result = widget.result
    flags = list(result.lower_bound_reasons) + list(result.warnings)
    if not (result.summary or {}).get("learnt", True):
        flags.append("nothing learnt")
    if flags:
        raise RuntimeError(f"the result is flagged, not a screenshot: {flags}")


def _show_transition(viewer, movie, widget, *, frame: int) -> None:
    """The per-transition map instead of the time average, each frame its own contrast."""
    widget.density_layer.visible = False
    widget.map_layer.visible = True
    widget.results_panel.contrast.value = "frame"
    viewer.layers.selection.active = widget.map_layer
    widget.go_to_frame(min(frame, movie.data.shape[0] - 2))
    viewer.reset_view()


def shot_bead_spring(*, seconds: float) -> None:
    """Training on the 2-bead sample, then the overlay and the EP trace."""
    viewer, movie, widget = _viewer_with("bead_spring_2")
    _train(viewer, widget, seconds=seconds, during="widget_training.png")
    viewer.layers.selection.active = widget.density_layer
    widget.go_to_frame(200)
    viewer.reset_view()
    _save_window(viewer, "widget_density_bead_spring.png")
    _show_transition(viewer, movie, widget, frame=200)
    _save_window(viewer, "widget_overlay_bead_spring.png")
    path = IMAGES / "widget_trace.png"
    widget.results.trace_panel.grab().save(str(path))
    print(f"wrote {path}")
    print(widget.run_panel.status.value)
    print(widget.run_panel.result.value)
    if widget.run_panel.note.value:
        print(widget.run_panel.note.value)
    viewer.close()


SHOTS = {"bead_spring": shot_bead_spring}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shots", nargs="*", metavar="SHOT", help=f"any of {', '.join(SHOTS)}")
    parser.add_argument("--seconds", type=float, default=90.0,
                        help="training budget per sample, seconds")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.shots) - set(SHOTS))
    if unknown:
        parser.error(f"unknown shot(s) {', '.join(unknown)}; choose from {', '.join(SHOTS)}")
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name in args.shots or SHOTS:
        SHOTS[name](seconds=args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
