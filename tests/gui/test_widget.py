"""GUI tests of the dock widget (napari viewer under Xvfb via pytest-xvfb or xvfb-run).

Training runs on tiny movies with small networks so that the whole file takes well
under a minute on two CPU cores; the numbers are not checked for physics here (the
engine's tests do that), only that the widget moves them to the right places.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.utils.notifications import notification_manager  # noqa: E402
from qtpy.QtCore import QTimer  # noqa: E402

from napari_dissipation.errors import InputError  # noqa: E402
from napari_dissipation.gui import jobs  # noqa: E402
from napari_dissipation.gui.layers import (  # noqa: E402
    DENSITY_NAME,
    MAP_NAME,
    MovieSelection,
    symmetric_limits,
)
from napari_dissipation.gui.session import Result, State  # noqa: E402
from napari_dissipation.gui.widget import DissipationWidget  # noqa: E402

pytestmark = pytest.mark.gui

#: A small, fast network; budgets in iterations (never seconds), no early stopping.
FAST = {"channels": 4, "batch_size": 32, "eval_every": 10, "eval_windows": 200,
        "threads": 1, "patience": 10_000, "max_seconds": None, "frames_per_input": 2}


def blob_movie(n_frames=120, size=12, *, seed=0) -> np.ndarray:
    """A Gaussian spot doing a random walk in a box: a (T, size, size) float32 movie."""
    rng = np.random.default_rng(seed)
    pos = np.clip(size / 2 + np.cumsum(rng.normal(0, 0.4, (n_frames, 2)), axis=0), 2, size - 3)
    yy, xx = np.mgrid[:size, :size]
    frames = np.exp(-((yy - pos[:, :1, None]) ** 2 + (xx - pos[:, 1:, None]) ** 2) / 4.0)
    return (frames + rng.normal(0, 0.02, frames.shape)).astype(np.float32)


class Notes:
    """Collects the notifications dispatched while it is alive."""

    def __init__(self):
        self.start = len(notification_manager.records)

    @property
    def messages(self) -> list[str]:
        return [str(n.message) for n in notification_manager.records[self.start:]]


@pytest.fixture
def viewer_widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = DissipationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Entropy production")
    yield viewer, widget
    if widget.worker is not None:
        widget.stop()
        qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    widget.close()


def fake_result(layer, *, dt, selection=None, maps=True) -> Result:
    """A result of known shape, as the jobs would hand it over."""
    n = layer.data.shape[0]
    rng = np.random.default_rng(1)
    m = rng.normal(0, 1, (n - 1, *layer.data.shape[1:])).astype(np.float32)
    return Result(layer_name=layer.name, selection=selection or MovieSelection(ndim=3,
                  time_axis=0), scale=tuple(layer.scale), translate=tuple(layer.translate),
                  n_frames=n, dt=dt, ep=m.sum(axis=(1, 2)), maps=m if maps else None,
                  density=m.mean(0) / dt, ep_rate=2.0312, ep_rate_ci=(1.9, 2.15),
                  how="trained", layer=layer, limits=symmetric_limits(m),
                  units=tuple(str(u) for u in layer.units),
                  frame_limits=np.abs(m).max(axis=(1, 2)) / 2)


def maps_shown(widget) -> bool:
    """Whether every job has ended and the result's maps are all in the viewer."""
    r, layer = widget.result, widget.map_layer
    return (widget.worker is None and r is not None and r.has_maps and layer is not None
            and maps_on_screen(widget, r))


def show(widget, result: Result) -> None:
    """Make ``result`` current and show its maps, as a training run and its maps job do."""
    widget.session.set_result(result)
    show_maps(widget, result)


def show_maps(widget, result: Result) -> None:
    """The maps' event; the per-transition layer comes a turn of the event loop later."""
    from qtpy.QtWidgets import QApplication

    widget.session.maps_changed.emit(result)
    deadline = time.monotonic() + 5
    while not maps_on_screen(widget, result):
        assert time.monotonic() < deadline, "the map layers never came"
        QApplication.processEvents()


def maps_on_screen(widget, result: Result) -> bool:
    """Whether the map layers of ``result`` are in the viewer with their colour bars."""
    layers = [widget.density_layer]
    if result.maps is not None:
        layers.append(widget.map_layer)
    return all(layer is not None and layer.colorbar.visible for layer in layers) and (
        result.maps is None or widget.map_layer.data.shape[-3] == len(result.ep))


def test_widget_docks_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-dissipation",
                                                         "Entropy production")
    assert isinstance(widget, DissipationWidget)
    assert len(widget.movie_panel.layer.choices) == 0 and widget.movie_layer is None
    widget.close()


def test_layer_picker_is_magicguis_image_combo_without_result_layers(viewer_widget):
    from napari.layers import Image

    viewer, widget = viewer_widget
    picker = widget.movie_panel.layer
    assert picker.annotation is Image and picker.widget_type == "ComboBox"
    movie = viewer.add_image(blob_movie(20), name="movie", metadata={"dt": 0.1})
    viewer.add_image(np.zeros((8, 8)), name="result", metadata={"dissipation": {}})
    assert picker.choices == (movie,) and widget.movie_layer is movie
    newer = viewer.add_image(blob_movie(20), name="newer")
    assert widget.movie_layer is movie  # a new layer does not take over the pick
    movie.name = "renamed"  # the pick follows its layer
    assert widget.movie_layer is movie and picker.current_choice == "renamed"
    viewer.layers.remove(movie)
    assert widget.movie_layer is newer


def test_dt_from_metadata_scale_or_user(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    panel = widget.movie_panel
    movie = blob_movie(20)
    viewer.add_image(movie, name="plain")
    assert widget.movie_layer.name == "plain"
    assert panel.dt.value is None and "enter" in panel.dt_source.value
    notes = Notes()
    widget.train()
    assert widget.worker is None and widget.session.state is State.IDLE
    assert any("dt (s/frame) is not set" in m for m in notes.messages)

    viewer.add_image(movie, name="scaled", scale=(0.05, 1, 1))
    widget.select_layer(viewer.layers["scaled"])
    assert panel.dt.value == pytest.approx(0.05)
    assert panel.dt_source.value == "from layer scale"

    viewer.add_image(movie, name="meta", metadata={"dt": 0.02})
    widget.select_layer(viewer.layers["meta"])
    assert widget.dt() == pytest.approx(0.02)
    assert panel.dt_source.value == "from layer metadata"
    panel.dt.value = 0.5
    assert widget.dt() == 0.5

    # what the plugin's reader writes (the io contract): dt from the file, scale in s, µm
    read = viewer.add_image(movie, name="read", scale=(0.1, 0.108, 0.108),
                            units=("s", "µm", "µm"),
                            metadata={"dt": 0.1, "dt_source": "ImageJ finterval",
                                      "path": "/data/m.tif", "pixel_size": 0.108,
                                      "pixel_unit": "µm"})
    widget.select_layer(read)
    assert widget.dt() == pytest.approx(0.1)
    assert panel.dt_source.value == "from file metadata (ImageJ finterval)"
    seconds = viewer.add_image(movie, name="one second", scale=(1.0, 1, 1),
                               units=("s", "pixel", "pixel"))
    widget.select_layer(seconds)  # a scale of 1 with unit seconds is a dt, not a default
    assert widget.dt() == 1.0 and panel.dt_source.value == "from layer scale"

    for typed in ("-1", "0"):  # refused in words, never silently 1
        panel.dt.native.setText("")
        qtbot.keyClicks(panel.dt.native, typed)
        assert panel.dt.native.text() == typed
        assert "positive" in panel.dt_source.value
        notes = Notes()
        widget.train()
        assert widget.worker is None
        assert any(f"must be a positive number of seconds, not '{typed}'" in m
                   for m in notes.messages)


def test_bad_layers_give_a_notification_not_a_crash(viewer_widget):
    viewer, widget = viewer_widget
    viewer.add_image(np.zeros((16, 16), np.float32), name="flat")
    viewer.add_image(np.zeros((5, 16, 16, 3), np.uint8), name="colour", rgb=True)
    for name, words in [("flat", "2-D image"), ("colour", "RGB")]:
        widget.select_layer(viewer.layers[name])
        assert words in widget.movie_panel.status.value
        notes = Notes()
        widget.train()
        assert widget.worker is None
        assert len(notes.messages) == 1 and words in notes.messages[0]
        assert widget.run_panel.train_button.enabled


def test_options_form_is_generated_from_the_schema(viewer_widget):
    from napari_dissipation.options import OPTIONS, validate

    viewer, widget = viewer_widget
    form = widget.options_form
    assert list(form.editors) == [o.name for o in OPTIONS]
    assert [w.name for w in form.first] == [o.name for o in OPTIONS if o.first_screen]
    assert [w.name for w in form.advanced] == [o.name for o in OPTIONS if not o.first_screen]
    for o in OPTIONS:
        editor = form.editors[o.name]
        assert editor.tooltip.startswith(o.help) and editor.label.lower() == o.label.lower()
    opts = widget.options()
    assert opts["max_seconds"] == 120.0  # the widget's own budget
    assert opts["threads"] >= 1 and opts["device"] in ("cpu", "cuda")
    assert validate(opts) == opts  # every value the form gives is one the engine takes
    defaults = validate({})
    for name in set(opts) - {"max_seconds", "threads", "device"}:
        assert opts[name] == defaults[name], name  # else the schema's defaults
    widget.set_options(frames_per_input=3)
    assert widget.options()["frames_per_input"] == 3
    widget.set_options(frames_per_input=defaults["frames_per_input"])
    assert widget.options()["frames_per_input"] == defaults["frames_per_input"]

    widget.set_options(max_seconds=None, threads=None, n_modes=3, precision="float32",
                       learning_rate=1e-4)
    opts = widget.options()
    assert opts["max_seconds"] is None and opts["threads"] is None
    assert form.editors["max_seconds"].native.text() == ""
    assert opts["n_patterns"] == 3 and opts["precision"] == "float32"
    assert opts["learning_rate"] == pytest.approx(1e-4)
    with pytest.raises(KeyError):
        widget.set_options(no_such_option=1)
    with pytest.raises(InputError):
        widget.set_options(precision="float64")
    form.editors["learning_rate"].native.setText("")
    notes = Notes()
    viewer.add_image(blob_movie(30), name="m", metadata={"dt": 0.1})
    widget.train()
    assert widget.worker is None and "Learning rate must be given" in notes.messages[-1]


def test_time_axis_of_a_4d_layer(viewer_widget):
    viewer, widget = viewer_widget
    data = np.zeros((3, 25, 10, 12), np.float32)
    layer = viewer.add_image(data, name="czyx", scale=(1, 0.1, 1, 1))
    widget.select_layer(layer)
    assert len(widget.movie_panel.time_axis.choices) == 2
    assert not widget.movie_panel.time_axis.native.isHidden()
    widget.set_time_axis(1)
    viewer.dims.set_current_step(0, 2)
    sel = widget.selection()
    assert sel.time_axis == 1 and dict(sel.fixed) == {0: 2}
    assert sel.movie(layer.data).shape == (25, 10, 12)
    assert "axis 0 at index 2" in widget.movie_panel.status.value
    assert widget.dt() == pytest.approx(0.1)

    # results of that movie line up with the slice they came from, and follow axis 1
    out = fake_result(layer, dt=0.1, selection=sel)
    maps = np.zeros((24, 10, 12), np.float32)
    out.maps, out.ep, out.density, out.n_frames = maps, maps.sum((1, 2)), maps[0], 25
    out.frame_limits = np.ones(24)
    show(widget, out)
    map_layer = viewer.layers[MAP_NAME]
    assert map_layer.data.shape == (1, 24, 10, 12)
    assert viewer.layers[DENSITY_NAME].data.shape == (1, 25, 10, 12)
    np.testing.assert_allclose(map_layer.data_to_world((0, 7, 0, 0)),
                               layer.data_to_world((2, 7, 0, 0)))
    widget.go_to_frame(9)
    assert viewer.dims.current_step[1] == 9 and viewer.dims.current_step[0] == 2
    assert widget.trace_plot.marker_x() == pytest.approx(0.9)


def test_a_drawn_rectangle_is_the_region_and_its_roi_flag(viewer_widget):
    """A Shapes rectangle picked as the region crops the movie (data pixels, whatever
    the layers' scales), the status gives the command line's --roi, and the maps are
    placed back on the region."""
    viewer, widget = viewer_widget
    layer = viewer.add_image(np.zeros((30, 40, 50), np.float32), name="movie",
                             scale=(0.1, 0.5, 0.5))
    widget.select_layer(layer)
    box = np.array([[5.0, 10.0], [5.0, 20.0], [15.0, 20.0], [15.0, 10.0]])  # world units
    shapes = viewer.add_shapes([box], shape_type="rectangle", name="box")
    panel = widget.movie_panel
    panel.region.value = shapes
    sel = widget.selection()
    assert sel.roi == (10, 30, 20, 40)
    assert sel.movie(layer.data).shape == (30, 20, 20)
    assert "--roi 10:30,20:40" in panel.status.value
    np.testing.assert_allclose(sel.translate_for(layer.scale, layer.translate), [0, 5, 10])
    panel.region.value = ""
    assert widget.selection().roi is None


def test_outputs_layers_trace_marker_and_click(viewer_widget):
    viewer, widget = viewer_widget
    exact = np.linspace(-1, 1, 39)
    movie = viewer.add_image(blob_movie(40), name="movie", scale=(0.05, 0.2, 0.2),
                             translate=(1.0, 3.0, -2.0), units=("s", "µm", "µm"),
                             metadata={"truth": {"step_ep": exact, "ep_rate": 1.5}})
    result = fake_result(movie, dt=0.05)
    widget.session.set_result(result)  # the rate first, the maps after
    assert DENSITY_NAME not in viewer.layers
    show_maps(widget, result)

    maps = viewer.layers[MAP_NAME]
    density = viewer.layers[DENSITY_NAME]
    assert widget.map_layer is maps and widget.density_layer is density
    assert maps.data.shape == (39, 12, 12)
    assert density.data.shape == (12, 12)
    # the time average shows first; each layer has its colour bar, apart from the other
    assert density.visible and not maps.visible
    assert density.colorbar.visible and maps.colorbar.visible
    assert density.colorbar.position != maps.colorbar.position
    np.testing.assert_allclose(maps.scale, movie.scale)
    np.testing.assert_allclose(maps.translate, movie.translate)
    np.testing.assert_allclose(density.scale, movie.scale[1:])
    np.testing.assert_allclose(density.translate, movie.translate[1:])
    assert [str(u) for u in maps.units] == [str(u) for u in movie.units]
    assert [str(u) for u in density.units] == [str(u) for u in movie.units[1:]]
    # transition t -> t+1 sits on movie frame t
    for t in (0, 17, 38):
        np.testing.assert_allclose(maps.data_to_world((t, 0, 0)), movie.data_to_world((t, 0, 0)))
    lo, hi = maps.contrast_limits
    assert lo == pytest.approx(-hi) and hi > 0
    widget.results_panel.contrast.value = "frame"  # each transition its own range
    for t in (5, 20):
        viewer.dims.set_point(0, movie.data_to_world((t, 0, 0))[0])
        assert maps.contrast_limits[1] == pytest.approx(result.frame_limits[t])
    widget.results_panel.contrast.value = "movie"
    assert tuple(maps.contrast_limits) == pytest.approx((lo, hi))
    assert maps.blending in ("translucent", "additive") and 0.3 <= maps.opacity <= 1
    assert maps.metadata["dissipation"]["ep_rate"] == pytest.approx(2.0312)
    assert maps.metadata["dissipation"]["dt"] == pytest.approx(0.05)
    text = widget.run_panel.result.value
    assert text.startswith("EP rate = 2.03 k_B/s (95% CI 1.90\u20132.15)")
    assert len(maps.name) <= 30 and "k_B" in maps.name and "k_B/s" in density.name
    assert "exact rate of this simulated movie: 1.5 k_B/s" in text
    assert widget.results_panel.export_trace_button.enabled
    assert widget.results_panel.export_maps_button.enabled

    plot = widget.trace_plot
    assert widget.trace_dock is not None and len(plot.ep) == 39
    assert viewer.window.dock_widgets["EP trace"] is widget.results.trace_panel
    assert not plot.isHidden() and widget.window_plot.isHidden()  # no curve in this result
    np.testing.assert_allclose(plot.exact, exact)
    viewer.dims.set_point(0, movie.data_to_world((12, 0, 0))[0])
    assert widget.current_frame() == 12
    assert plot.marker_x() == pytest.approx(12 * 0.05)

    from matplotlib.backend_bases import MouseEvent

    x, y = plot.ax_sum.transData.transform((30 * 0.05, 0.0))
    MouseEvent("button_press_event", plot.canvas, x, y, button=1)._process()
    assert widget.current_frame() == 30
    assert plot.marker_x() == pytest.approx(30 * 0.05)
    movie.name = "renamed movie"  # the marker keeps following its movie
    viewer.dims.set_point(0, movie.data_to_world((21, 0, 0))[0])
    assert plot.marker_x() == pytest.approx(21 * 0.05)
    viewer.dims.set_point(0, movie.data_to_world((30, 0, 0))[0])
    # map and movie show the same frame index after the click
    assert viewer.dims.current_step[0] == round(
        (maps.data_to_world((30, 0, 0))[0] - viewer.dims.range[0].start)
        / viewer.dims.range[0].step)


@pytest.mark.parametrize("how", ["close", "undock"])
def test_the_trace_dock_goes_with_the_widget(make_napari_viewer, how):
    viewer = make_napari_viewer()
    widget = DissipationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Entropy production")
    movie = viewer.add_image(blob_movie(20), name="movie", metadata={"dt": 0.1})
    show(widget, fake_result(movie, dt=0.1))
    assert "EP trace" in viewer.window.dock_widgets
    if how == "close":
        widget.close()
    else:  # the dock's close button
        viewer.window.remove_dock_widget(widget)
    assert "EP trace" not in viewer.window.dock_widgets
    assert widget.trace_dock is None
    viewer.add_image(blob_movie(20), name="later")  # the widget no longer listens
    assert widget.movie_layer is movie
    show(widget, fake_result(movie, dt=0.1))  # e.g. a job ending late
    assert "EP trace" not in viewer.window.dock_widgets


@pytest.mark.slow
def test_training_keeps_the_viewer_responsive_and_stops_fast(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    movie = viewer.add_image(blob_movie(200, 12), name="spot", metadata={"dt": 0.01})
    widget.select_layer(movie)
    widget.set_options(max_iterations=1_000_000, **FAST)

    ticks = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    widget.train()
    worker = widget.worker
    assert widget.session.state is State.TRAINING and widget.busy
    assert not widget.run_panel.train_button.enabled and widget.run_panel.stop_button.enabled
    assert not widget.movie_panel.layer.enabled and not widget.options_form.editors["seed"].enabled
    widget.train()  # refused while training: the same worker runs on
    assert widget.worker is worker
    # Count ticks over two seconds of steady training, after the worker's start (its first
    # optimizer step imports part of torch once, a pause of a few tenths of a second).
    qtbot.waitUntil(lambda: len(widget.training_plot.rate) >= 1, timeout=30_000)
    timer.start()
    t0 = time.perf_counter()
    qtbot.wait(2000)
    assert widget.busy, "training ended before the measurement did"
    elapsed = time.perf_counter() - t0
    expected = elapsed / 0.020
    gaps = np.diff(ticks) if len(ticks) > 1 else np.array([elapsed])
    print(f"timer ticks while training: {len(ticks)} of {expected:.0f} expected; "
          f"longest gap {1000 * gaps.max():.0f} ms")
    assert len(ticks) >= 0.5 * expected, (len(ticks), expected)
    assert widget.run_panel.progress.value >= 0

    t_stop = time.perf_counter()
    with qtbot.waitSignal(worker.finished, timeout=5_000):
        widget.stop()
        assert widget.session.state is State.STOPPING
        assert not widget.run_panel.stop_button.enabled
    stop_seconds = time.perf_counter() - t_stop
    print(f"Stop -> worker finished: {stop_seconds:.2f} s")
    assert stop_seconds < 2.0, stop_seconds
    # the rate is on screen; the maps follow in the background
    assert widget.result is not None and widget.result.summary["stop_reason"] == "stopped"
    assert "EP rate" in widget.run_panel.result.value
    qtbot.waitUntil(lambda: maps_shown(widget), timeout=10_000)
    timer.stop()
    assert widget.run_panel.train_button.enabled
    assert widget.model.is_fitted and widget.run_panel.estimate_button.enabled
    assert viewer.layers[MAP_NAME].data.shape == (199, 12, 12)
    assert viewer.layers[DENSITY_NAME].data.shape == (12, 12)
    assert len(widget.trace_plot.ep) == 199
    np.testing.assert_allclose(viewer.layers[MAP_NAME].data.sum(axis=(1, 2)),
                               widget.trace_plot.ep, rtol=1e-3, atol=1e-3)
    text = widget.run_panel.result.value
    assert "EP rate" in text and "95% CI" in text and "held-out time blocks" in text
    assert "k = 2 frames per input, as set" in text
    assert "stopped by you" in widget.run_panel.status.value
    assert widget.run_panel.progress.value == 1000


@pytest.mark.slow
def test_save_load_estimate_and_export(viewer_widget, qtbot, tmp_path):
    viewer, widget = viewer_widget
    first = viewer.add_image(blob_movie(120, 10, seed=2), name="first", scale=(0.01, 1, 1))
    widget.select_layer(first)
    widget.set_options(max_iterations=20, **{**FAST, "frames_per_input": "auto"})
    widget.train()
    qtbot.waitUntil(lambda: maps_shown(widget), timeout=60_000)
    k = widget.result.frames_per_input  # chosen from the data, with its curve beside the trace
    assert widget.model.frames_per_input == k
    if widget.result.rate_by_window:
        assert f"k = {k} frames per input, chosen from the data" in widget.run_panel.result.value
        qtbot.waitUntil(lambda: not widget.window_plot.isHidden(), timeout=5_000)
        assert widget.window_plot.chosen_x() == k
    else:  # a random walk has no arrow of time: the scan may find nothing to compare
        assert "could not compare window lengths" in widget.run_panel.result.value
        assert widget.window_plot.isHidden()
    path = widget.save_estimator(tmp_path / "est.pt")
    assert path.is_file()

    widget2 = DissipationWidget(viewer)
    try:
        assert not widget2.run_panel.estimate_button.enabled
        widget2.load_estimator(path)
        assert "10 x 10 pixel frames" in widget2.results_panel.model_label.value
        second = viewer.add_image(blob_movie(60, 10, seed=3), name="second", scale=(0.01, 1, 1))
        widget2.select_layer(second)
        assert widget2.run_panel.estimate_button.enabled
        widget2.estimate()
        assert widget2.session.state is State.ESTIMATING
        qtbot.waitUntil(lambda: maps_shown(widget2), timeout=30_000)
        # the same quantity as the model's rate, with an interval from time blocks
        assert widget2.result.how == "estimated"
        rate, ci = widget.model.ep_rate_ci(second.data, dt=0.01)
        assert widget2.result.ep_rate == pytest.approx(rate)
        assert widget2.result.ep_rate_ci == pytest.approx(ci)
        assert "measured on all 59 transitions" in widget2.run_panel.result.value
        assert viewer.layers[MAP_NAME].data.shape == (59, 10, 10)
        np.testing.assert_allclose(widget2.result.ep, widget.model.stochastic_ep(second.data),
                                   atol=1e-5)
        assert widget2.run_panel.result.value.startswith("EP rate = ")
        assert (f"k = {k} frames per input, as the estimator was trained"
                in widget2.run_panel.result.value)
        assert widget2.window_plot.isHidden() and not widget2.window_plot.has_curve

        wrong = viewer.add_image(blob_movie(30, 14), name="wrong", scale=(0.01, 1, 1))
        widget2.select_layer(wrong)
        notes = Notes()
        widget2.estimate()
        assert widget2.worker is None and "14 x 14" in notes.messages[-1]
    finally:
        widget2.close()

    # Estimate on the movie it was trained on says that this rate counts training frames
    widget.select_layer(first)
    widget.estimate()
    qtbot.waitUntil(lambda: widget.result.how == "estimated" and maps_shown(widget),
                    timeout=30_000)
    assert "trained on" in widget.run_panel.note.value
    assert "measured on all 119 transitions" in widget.run_panel.result.value

    widget.export_trace(tmp_path / "trace.csv")
    assert widget.session.state is State.EXPORTING
    assert not widget.results_panel.export_maps_button.enabled
    qtbot.waitUntil(lambda: not widget.busy, timeout=10_000)
    lines = (tmp_path / "trace.csv").read_text().splitlines()
    assert lines[0].split(",") == ["movie", "frame", "ep"] and len(lines) == 1 + 119
    import tifffile

    widget.export_maps(tmp_path / "maps.tif")
    qtbot.waitUntil(lambda: not widget.busy, timeout=10_000)
    assert tifffile.imread(tmp_path / "maps.tif").shape == (119, 10, 10)
    assert widget.result.how == "estimated"
    import json

    assert widget.results_panel.record_button.enabled
    widget.save_record(tmp_path / "record.json")
    qtbot.waitUntil(lambda: not widget.busy, timeout=10_000)
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["dt"] == pytest.approx(0.01) and record["dt_source"] == "layer scale"
    assert record["result"]["ep_rate"] == pytest.approx(widget.result.ep_rate)
    assert record["selection"]["layer"] == "first" and record["inputs"] == []
    assert record["options"]["frames_per_input"] == k and record["versions"]["numpy"]
    from napari_dissipation.io import read_movie

    assert read_movie(tmp_path / "maps.tif").dt == pytest.approx(0.01)


def test_engine_error_is_a_notification_and_the_widget_recovers(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    bad = blob_movie(60, 10)
    bad[7, 3, 3] = np.nan
    viewer.add_image(bad, name="holes", metadata={"dt": 0.1})
    widget.set_options(max_iterations=20, **FAST)
    notes = Notes()
    widget.train()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert notes.messages and "Training failed" in notes.messages[-1]
    assert widget.run_panel.train_button.enabled and widget.result is None
    assert widget.session.state is State.IDLE


def test_too_large_maps_are_skipped_not_held(viewer_widget, monkeypatch, qtbot, tmp_path):
    viewer, widget = viewer_widget
    movie = viewer.add_image(blob_movie(40), name="long", metadata={"dt": 0.1})
    monkeypatch.setattr(jobs, "MAX_MAP_BYTES", 4 * 39 * 12 * 12 - 1)
    assert not jobs.maps_fit(movie.data.shape)
    notes = Notes()
    show(widget, fake_result(movie, dt=0.1, maps=False))
    assert MAP_NAME not in viewer.layers
    assert viewer.layers[DENSITY_NAME].visible
    assert any("maps skipped" in m for m in notes.messages)
    assert not widget.results_panel.export_maps_button.enabled
    with pytest.raises(InputError, match="too large"):
        widget.export_maps(tmp_path / "m.tif")
    widget.export_trace(tmp_path / "t.csv")
    qtbot.waitUntil(lambda: not widget.busy, timeout=10_000)
    assert (tmp_path / "t.csv").is_file()


def test_loading_a_bad_file_is_refused(viewer_widget, tmp_path):
    viewer, widget = viewer_widget
    bad = tmp_path / "not_a_model.pt"
    bad.write_bytes(b"nonsense")
    with pytest.raises(InputError, match="not a napari-dissipation model"):
        widget.load_estimator(bad)
    assert widget.model is None and not widget.run_panel.estimate_button.enabled
    viewer.theme = "light"  # plots follow the theme
    assert widget.trace_plot.figure.get_facecolor()[0] > 0.5


def test_objective_plot_range_survives_a_diverging_validation():
    from napari_dissipation.gui.plots import objective_limits

    train = list(np.linspace(-1.0, -0.9, 60)) + [-1.3e6]  # one spike
    val = [-1.0, -0.98, -0.97, -2e14]  # then divergence
    lo, hi = objective_limits(train, val)
    assert -1.5 < lo < -1.0 and -0.9 < hi < -0.8
    lo, hi = objective_limits([-1.0, -0.9], [-0.95, -0.8])
    assert lo < -1.0 and hi > -0.8
    assert objective_limits([], []) is None


def test_an_unexpected_engine_error_keeps_its_traceback(viewer_widget, qtbot, monkeypatch,
                                                        caplog):
    # torch fails with RuntimeError, which superqt's GeneratorWorker would swallow
    from napari_dissipation.estimate import EPEstimator

    def broken_fit_iter(self, movies, *, dt, names=None):
        yield from ()
        raise RuntimeError("boom")

    monkeypatch.setattr(EPEstimator, "fit_iter", broken_fit_iter)
    viewer, widget = viewer_widget
    viewer.add_image(blob_movie(30), name="m", metadata={"dt": 0.1})
    notes = Notes()
    widget.train()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert any("unexpected RuntimeError: boom" in m for m in notes.messages)
    assert "Traceback" in caplog.text and "broken_fit_iter" in caplog.text
    assert widget.run_panel.train_button.enabled and widget.run_panel.progress.max == 1000


@pytest.mark.slow
def test_nothing_learnt_is_said_in_the_status(viewer_widget, qtbot):
    """Independent noise frames carry no arrow of time: the status says that the zero rate
    means nothing was learnt, not that there is no entropy production."""
    viewer, widget = viewer_widget
    noise = np.random.default_rng(4).normal(0, 1, (200, 10, 10)).astype(np.float32)
    layer = viewer.add_image(noise, name="noise", scale=(0.01, 1, 1))
    widget.select_layer(layer)
    widget.set_options(max_iterations=20, **FAST)
    widget.train()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert widget.result is not None and widget.result.ep_rate == 0.0
    assert "nothing was learnt" in widget.run_panel.status.value


def test_a_long_trace_is_drawn_as_its_envelope():
    from napari_dissipation.gui.plots import MAX_POINTS, envelope

    t = np.arange(20_000) * 0.01
    y = np.random.default_rng(5).normal(size=t.size)
    ts, ys = envelope(t, y)
    assert len(ts) == MAX_POINTS and np.all(np.diff(ts) >= 0)
    assert ys.max() == y.max() and ys.min() == y.min()  # every spike stays visible
    short_t, short_y = envelope(t[:100], y[:100])
    np.testing.assert_array_equal(short_y, y[:100])
