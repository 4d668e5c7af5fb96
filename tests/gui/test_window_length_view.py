"""Issue 14 in the widget: k = "auto" in the form, the chosen k and a lower bound beside the
rate, and the rate by window length beside the EP trace.

Results are built by hand from a ``FitResult`` (no training): the widget only moves the
engine's numbers to the screen.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import Qt  # noqa: E402

from napari_dissipation import FitResult  # noqa: E402
from napari_dissipation.gui import jobs  # noqa: E402
from napari_dissipation.gui.layers import MovieSelection  # noqa: E402
from napari_dissipation.gui.session import Result, fit_fields  # noqa: E402
from napari_dissipation.gui.widget import DissipationWidget  # noqa: E402
from napari_dissipation.gui.window_plot import WindowPlot  # noqa: E402

pytestmark = pytest.mark.gui

CURVE = [
    {"k": 2, "rate": 1.2, "ci": [1.0, 1.4], "validation_rate": 1.25, "n_patterns": 8},
    {"k": 3, "rate": 1.5, "ci": [1.3, 1.7], "validation_rate": 1.5, "n_patterns": 8},
    {"k": 4, "rate": 1.7, "ci": [1.5, 1.9], "validation_rate": 1.72, "n_patterns": 8},
    {"k": 6, "rate": 1.8, "ci": [1.6, 2.0], "validation_rate": 1.83, "n_patterns": 6},
    {"k": 8, "rate": 1.85, "ci": [1.6, 2.1], "validation_rate": 1.86, "n_patterns": 6},
]
RISING = "the rate still rose with the window length at the longest window tried (8 frames)"


def fit_result(*, n_transitions: int, k: int = 8, reasons=(), curve=CURVE) -> FitResult:
    ep = np.random.default_rng(0).normal(0.02, 0.1, n_transitions)
    return FitResult(ep_rate=1.93, ep_rate_ci=(1.6, 2.3), dt=0.01,
                     n_transitions=n_transitions, n_held_out=40, held_out_by="time blocks",
                     held_out=[(0, 0, 40)], stochastic_ep=[ep], history=[], seconds=3.0,
                     iterations=20, best_iteration=20, stop_reason="iterations",
                     frames_per_input=k, rate_by_window=list(curve),
                     lower_bound_reasons=list(reasons))


def result_of(layer, fit: FitResult, *, window_chosen: bool = True) -> Result:
    """A training run's result as the widget makes it: rate and trace, maps later."""
    return Result.of_layer(layer, MovieSelection(ndim=3, time_axis=0), fit.dt,
                           ep=fit.stochastic_ep[0], how="trained",
                           **fit_fields(fit, window_chosen=window_chosen))


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = DissipationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Entropy production")
    yield viewer, widget
    widget.close()


def test_frames_per_input_is_auto_or_a_whole_number_of_at_least_two(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    form = widget.options_form
    editor = form.editors["frames_per_input"]
    assert editor.native.text() == "auto" and widget.options()["frames_per_input"] == "auto"
    assert "frames_per_input" in [w.name for w in form.first]  # on the first screen

    def type_in(text):
        editor.native.clear()
        qtbot.keyClicks(editor.native, text)
        qtbot.keyClick(editor.native, Qt.Key.Key_Return)  # leaves the field: it is checked

    for text, value in (("4", 4), ("Auto", "auto"), ("16", 16), ("auto", "auto")):
        type_in(text)
        assert widget.options()["frames_per_input"] == value, text
        assert form.problem.isHidden()
    for text, words in (("1", "Frames per input must be at least 2, got 1"),
                        ("2.5", "Frames per input must be a whole number"),
                        ("many", "Frames per input must be a whole number or 'auto'")):
        type_in(text)
        assert not form.problem.isHidden() and form.problem.text().startswith(words), text
    from napari.utils.notifications import notification_manager

    viewer.add_image(np.zeros((30, 8, 8), np.float32), name="m", metadata={"dt": 0.1})
    start = len(notification_manager.records)
    type_in("1")
    widget.train()  # refused before any thread starts
    assert widget.worker is None and not widget.busy
    messages = [str(n.message) for n in notification_manager.records[start:]]
    assert messages[-1] == "Cannot train: Frames per input must be at least 2, got 1"
    type_in("auto")
    assert form.problem.isHidden() and form.check() is None


def test_a_lower_bound_is_said_next_to_the_rate_with_its_reasons(viewer_widget):
    viewer, widget = viewer_widget
    movie = viewer.add_image(np.zeros((41, 8, 8), np.float32), name="noisy",
                             metadata={"dt": 0.01})
    result = result_of(movie, fit_result(n_transitions=40, reasons=[RISING]))
    widget.session.set_result(result)
    result.set_maps(jobs.MapsOutcome(np.zeros((40, 8, 8), np.float32),
                                     np.zeros((8, 8), np.float32), (-1.0, 1.0), np.ones(40)))
    widget.session.maps_changed.emit(result)  # what the maps job does once it is done
    lines = widget.run_panel.result.value.splitlines()
    assert lines[0] == "EP rate \u2265 1.93 k_B/s (lower bound; 95% CI 1.60\u20132.30)"
    assert lines[1].startswith("measured on 1 held-out time block (40 of 40 transitions)")
    assert lines[2] == "k = 8 frames per input, chosen from the data"
    note = widget.run_panel.note
    assert not note.native.isHidden()
    assert note.value.startswith("Lower bound: the rate still rose with the window length")
    assert "true rate is likely higher" in note.value
    assert "\u2265" in widget.trace_plot.ax_step.get_title()
    assert widget.density_layer.metadata["dissipation"]["fit"]["lower_bound"] is True

    # no sign of a lower bound: today's text, no note; a k that was set says so
    fit = fit_result(n_transitions=40, k=3)
    widget.session.set_result(result_of(movie, fit, window_chosen=False))
    lines = widget.run_panel.result.value.splitlines()
    assert lines[0] == "EP rate = 1.93 k_B/s (95% CI 1.60\u20132.30)"
    assert lines[2] == "k = 3 frames per input, as set"
    assert note.native.isHidden() and note.value == ""


def test_the_window_plot_gets_the_curve_marks_k_and_the_exact_rate(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    movie = viewer.add_image(np.zeros((41, 8, 8), np.float32), name="simulated",
                             metadata={"dt": 0.01, "truth": {"ep_rate": 2.0}})
    widget.session.set_result(result_of(movie, fit_result(n_transitions=40)))
    plot = widget.window_plot
    assert widget.trace_dock is not None
    # drawn a moment after the trace (results_view.STAGGER_MS)
    qtbot.waitUntil(lambda: not plot.isHidden(), timeout=5_000)
    np.testing.assert_array_equal(plot.k, [2, 3, 4, 6, 8])
    np.testing.assert_allclose(plot.rate, [1.2, 1.5, 1.7, 1.8, 1.85])
    np.testing.assert_allclose(plot.lower, [1.0, 1.3, 1.5, 1.6, 1.6])
    np.testing.assert_allclose(plot.upper, [1.4, 1.7, 1.9, 2.0, 2.1])
    assert plot.chosen_x() == 8 and plot.ax.get_xscale() == "log"
    assert plot.exact == 2.0 and plot.reported == pytest.approx(1.93)
    labels = plot.ax.get_legend_handles_labels()[1]
    assert "k = 8 (chosen)" in labels and "exact (simulation)" in labels
    assert [t.get_text() for t in plot.ax.get_xticklabels()] == ["2", "3", "4", "6", "8"]

    # a result without a curve (a loaded estimator's) hides the plot
    plain = result_of(movie, fit_result(n_transitions=40, curve=[]))
    plain.how = "estimated"
    widget.session.set_result(plain)
    assert plot.isHidden() and not plot.has_curve and plot.chosen_x() is None
    viewer.theme = "light"  # follows the theme like the other plots
    assert plot.figure.get_facecolor()[0] > 0.5


def test_the_window_plot_draws_without_warnings(qtbot):
    plot = WindowPlot()
    qtbot.addWidget(plot)
    plot.resize(260, 180)  # its smallest size
    plot.show()
    qtbot.waitExposed(plot)
    curve = CURVE + [{"k": 12, "rate": float("nan"), "ci": None},  # skipped
                     {"k": 16, "rate": 1.9, "ci": None},  # no interval: no bar
                     {"k": 24, "rate": 2.2, "ci": [2.3, 2.5]}]  # rate outside: no crash
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot.set_curve(curve, chosen=4, chosen_from_data=False, reported=1.75, exact=None)
        plot.canvas.draw()
        plot.clear()
        plot.canvas.draw()
    np.testing.assert_array_equal(plot.k, [])
    plot.set_curve(curve, chosen=4, chosen_from_data=False)
    np.testing.assert_array_equal(plot.k, [2, 3, 4, 6, 8, 16, 24])
    assert "k = 4 (set)" in plot.ax.get_legend_handles_labels()[1]


def test_a_draw_does_not_blit_so_a_paint_never_repaints_recursively(qtbot):
    """A pending draw may run inside the canvas's paintEvent (e.g. when a screenshot grabs
    the window): a blit there calls repaint() inside a paint, which Qt reports as
    "Recursive repaint detected".  The trace's frame marker is drawn into the draw's own
    buffer instead; only moving the marker later blits."""
    from napari_dissipation.gui.plots import EPTracePlot

    trace = EPTracePlot()
    qtbot.addWidget(trace)
    trace.resize(400, 200)
    trace.show()
    qtbot.waitExposed(trace)
    trace.set_trace(np.linspace(0, 1, 50), dt=0.1)
    trace.set_frame(7)
    blits = []
    blit = trace.canvas.blit
    trace.canvas.blit = lambda *args: (blits.append(args), blit(*args))
    trace.canvas.draw()  # what a paint with a pending draw runs
    assert blits == []
    trace.grab()
    assert blits == []
    trace.set_frame(9)  # a marker move on the cached background: blitted, outside a paint
    assert len(blits) == 1 and trace.marker_x() == pytest.approx(0.9)


def test_a_window_whose_fit_did_not_generalise_is_left_out_of_the_plot():
    from napari_dissipation.gui.window_plot import curve_arrays

    curve = CURVE[:3] + [dict(CURVE[3], generalises=False)]
    k, *_ = curve_arrays(curve)
    assert list(k) == [2, 3, 4]
