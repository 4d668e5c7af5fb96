"""The widget's session (state machine) and job bodies, without Qt, napari or a display."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dissipation.errors import InputError
from napari_dissipation.gui import jobs
from napari_dissipation.gui.layers import MovieSelection
from napari_dissipation.gui.session import (
    Refused,
    Result,
    Session,
    State,
    describe_fit,
    describe_lower_bound,
    describe_window,
    fit_fields,
)


class Stopper:
    def __init__(self):
        self.stops = 0

    def request_stop(self):
        self.stops += 1


class FakeModel:
    """What the jobs need of a TrainedModel: per-pixel maps that sum to the trace."""

    frames_per_input = 2
    frame_shape = raw_frame_shape = (4, 5)
    is_fitted = True

    def __init__(self, dt=0.1):
        self.dt = dt

    def check_movie(self, movie, *, name="movie"):
        if np.shape(movie)[0] < 3:
            raise InputError(f"{name}: too few frames")

    def dissipation_map(self, movie, *, name="movie"):
        movie = np.asarray(movie, dtype=np.float32)
        return movie[1:] - movie[:-1]

    def stochastic_ep(self, movie, *, name="movie"):
        return self.dissipation_map(movie).sum(axis=(1, 2))

    def window_ep(self, movie, *, name="movie"):  # k = 2: one window per transition
        return self.stochastic_ep(movie, name=name)

    def transition_ep(self, movie, *, name="movie"):
        return self.window_ep(movie, name=name)[:, None]

    def ep_rate(self, movie, *, dt=None, name="movie"):
        return float(self.stochastic_ep(movie).mean() / (dt or self.dt))

    def ep_rate_density(self, movie, *, dt=None, name="movie"):
        return self.dissipation_map(movie).mean(axis=0) / (dt or self.dt)

    def ep_rate_ci(self, movie, *, dt=None, name="movie"):
        return self.rate_ci_of_windows(self.window_ep(movie, name=name), dt=dt)

    def rate_ci_of_windows(self, eps, *, dt=None):
        rate = float(np.mean(eps) / (dt or self.dt))
        return rate, (rate - 1.0, rate + 1.0)

    def rate_scale(self, dt=None):
        return dt or self.dt

    def iter_window_maps(self, movie, *, name="movie", batch=4, transitions=False):
        maps = self.dissipation_map(movie)
        if transitions:
            maps = maps[:, None]
        for a in range(0, len(maps), batch):
            yield a, maps[a: a + batch]


def result(maps=True) -> Result:
    m = np.ones((9, 4, 5), np.float32)
    return Result(layer_name="movie", selection=MovieSelection(ndim=3, time_axis=0),
                  scale=(1, 1, 1), translate=(0, 0, 0), n_frames=10, dt=0.1,
                  ep=m.sum(axis=(1, 2)), maps=m if maps else None, density=m[0],
                  ep_rate=2.0, ep_rate_ci=(1.5, 2.5), how="trained")


@pytest.fixture
def session():
    s = Session()
    s.log = []
    s.state_changed.connect(lambda new, old: s.log.append(("state", new.value)))
    s.model_changed.connect(lambda m: s.log.append(("model", m)))
    s.result_changed.connect(lambda r: s.log.append(("result", r.how)))
    s.failed.connect(lambda job, exc: s.log.append(("failed", job, str(exc))))
    s.finished.connect(lambda job, ok: s.log.append(("finished", job, ok)))
    return s


def test_idle_allows_training_only_until_there_is_a_model_and_a_result(session):
    assert session.state is State.IDLE and not session.busy
    assert session.can("train") and session.can("load") and session.can("edit")
    for action in ("stop", "estimate", "save", "export", "export_maps"):
        assert not session.can(action), action
    assert "no estimator" in session.why_not("estimate")
    assert "no result" in session.why_not("export")
    with pytest.raises(Refused):
        session.start("estimate")
    with pytest.raises(ValueError):
        session.can("dance")


def run_generator(gen):
    """Everything a job generator yields, and what it returns."""
    yielded = []
    while True:
        try:
            yielded.append(next(gen))
        except StopIteration as stop:
            return yielded, stop.value


def test_training_stop_and_success_then_maps(session):
    stopper = Stopper()
    session.start("train", stopper=stopper)
    assert session.state is State.TRAINING and session.job == "Training"
    for action in ("train", "estimate", "load", "edit", "export"):
        assert not session.can(action), action
    with pytest.raises(Refused, match="Training is running"):
        session.start("train")
    session.report("record 1")
    assert session.last_progress == "record 1"

    assert session.request_stop() and session.stop_requested and stopper.stops == 1
    assert session.state is State.STOPPING and not session.can("stop")
    assert not session.request_stop() and stopper.stops == 1
    model = FakeModel()
    res = result()
    res.maps = res.density = None  # a result comes without maps: they follow the rate
    session.succeed(model=model, result=res)
    assert session.state is State.IDLE and session.model is model
    assert session.log == [("state", "training"), ("state", "stopping"), ("state", "idle"),
                           ("model", model), ("result", "trained"),
                           ("finished", "Training", True)]
    assert session.can("estimate") and session.can("save") and session.can("export")
    assert "press Compute maps" in session.why_not("export_maps")
    session.end()  # the worker's finished signal comes after: nothing more happens
    assert session.log[-1] == ("finished", "Training", True)

    session.start("maps", stopper=stopper)  # the maps, after the rate is shown
    assert session.state is State.MAPPING and session.can("stop")
    _, out = run_generator(jobs.maps(model, np.ones((10, 4, 5), np.float32), dt=0.1,
                                     name="m"))
    maps_seen = []
    session.maps_changed.connect(maps_seen.append)
    session.succeed(maps=out)
    assert maps_seen == [res] and res.has_maps and res.has_density
    assert session.can("export_maps") and "computed" in session.why_not("maps")


def test_a_failure_returns_to_idle_with_events(session):
    session.start("train")
    session.fail(RuntimeError("boom"))
    assert session.state is State.IDLE
    assert session.log[-2:] == [("failed", "Training", "boom"), ("finished", "Training", False)]
    session.fail(RuntimeError("again"))  # not busy: ignored
    assert session.log[-1] == ("finished", "Training", False)


def test_a_worker_that_ends_without_a_result_frees_the_session(session):
    session.start("train")
    session.end()
    assert session.state is State.IDLE and session.log[-1] == ("finished", "Training", False)


def test_exports_need_a_result_and_maps(session):
    session.set_result(result(maps=False))
    assert session.can("export") and not session.can("export_maps")
    assert "too large" in session.why_not("export_maps")
    session.start("export")
    assert session.state is State.EXPORTING and not session.can("export")
    with pytest.raises(Refused):
        session.set_model(FakeModel())
    session.succeed()
    assert session.log[-1] == ("finished", "Export", True) and session.result.how == "trained"


def test_only_listed_transitions_happen(session):
    with pytest.raises(Refused, match="no result"):
        session.start("maps")
    session.set_model(FakeModel())
    session.start("estimate")
    assert not session.request_stop()  # estimation has no Stop
    with pytest.raises(RuntimeError, match="from estimating to mapping"):
        session._set_state(State.MAPPING)


def test_closing_stops_a_training(session):
    stopper = Stopper()
    session.start("train", stopper=stopper)
    session.close()
    assert stopper.stops == 1 and session.state is State.STOPPING


def test_describe_fit_says_when_nothing_was_learnt():
    class Fit:
        stop_reason, seconds, iterations, learnt = "early stopping", 12.3, 400, False

    text = describe_fit(Fit())
    assert text.startswith("Trained in 12 s, 400 iterations (early stopping")
    assert "nothing was learnt" in text


def test_a_training_result_carries_k_the_curve_and_the_lower_bound():
    from napari_dissipation import FitResult

    curve = [{"k": 2, "rate": 1.0, "ci": [0.8, 1.2], "validation_rate": 1.0,
              "n_patterns": 4},
             {"k": 4, "rate": 1.6, "ci": [1.3, 1.9], "validation_rate": 1.5,
              "n_patterns": 4}]
    reasons = ["the rate still rose with the window length at the longest window tried "
               "(4 frames)",
               "training was stopped by its budget while the held-out objective was still "
               "improving"]
    fit = FitResult(ep_rate=1.7, ep_rate_ci=(1.4, 2.0), dt=0.1, n_transitions=9,
                    n_held_out=3, held_out_by="time blocks", held_out=[(0, 6, 9)],
                    stochastic_ep=[np.ones(9)], history=[], seconds=1.0, iterations=20,
                    best_iteration=20, stop_reason="iterations", frames_per_input=4,
                    rate_by_window=curve, lower_bound_reasons=reasons)
    fields = fit_fields(fit, window_chosen=True)
    res = result()
    for name, value in fields.items():
        setattr(res, name, value)
    assert res.frames_per_input == 4 and res.rate_by_window == curve
    assert res.lower_bound and res.ep_rate_ci == (1.4, 2.0)
    assert res.summary["lower_bound"] is True and res.summary["frames_per_input"] == 4
    assert describe_window(res) == "k = 4 frames per input, chosen from the data"
    note = describe_lower_bound(res)
    assert note.startswith("Lower bound: the rate still rose with the window length at the "
                           "longest window tried (4 frames); training was stopped by its "
                           "budget")
    res.window_chosen = False
    assert describe_window(res) == "k = 4 frames per input, as set"
    res.how = "estimated"
    assert describe_window(res) == "k = 4 frames per input, as the estimator was trained"
    res.how, res.window_chosen, res.rate_by_window = "trained", True, []
    assert describe_window(res) == ("k = 4 frames per input; these data could not compare "
                                    "window lengths")
    plain = result()  # made by hand without these fields: nothing to say
    assert describe_window(plain) == "" and describe_lower_bound(plain) == ""
    assert not plain.lower_bound


# ------------------------------------------------------------------ jobs
def test_estimate_and_maps_jobs_and_model_checks():
    model = FakeModel(dt=0.1)
    movie = np.random.default_rng(0).normal(size=(12, 4, 5)).astype(np.float32)
    out = jobs.estimate(model, movie, dt=0.1, name="m")
    assert out.ep.shape == (11,) and out.frames_per_input == 2  # the model's
    assert out.ep_rate == pytest.approx(model.ep_rate(movie, dt=0.1))
    assert out.ep_rate_ci == pytest.approx((out.ep_rate - 1, out.ep_rate + 1))
    fractions, maps = run_generator(jobs.maps(model, movie, dt=0.1, name="m"))
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 3
    assert maps.maps.shape == (11, 4, 5) and maps.density.shape == (4, 5)
    np.testing.assert_allclose(maps.maps.sum(axis=(1, 2)), out.ep, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(maps.density, model.ep_rate_density(movie, dt=0.1), rtol=1e-5)
    lo, hi = maps.limits
    assert lo == -hi and hi > 0 and maps.frame_limits.shape == (11,)
    assert np.all(maps.frame_limits <= np.abs(maps.maps).max(axis=(1, 2)) + 1e-6)
    assert jobs.check_model_fits(model, movie, dt=0.1, name="m") is None
    assert "dt = 0.2 s" in jobs.check_model_fits(model, movie, dt=0.2, name="m")
    with pytest.raises(InputError, match="6 x 5 pixels.*4 x 5"):
        jobs.check_model_fits(model, np.zeros((12, 6, 5)), dt=0.1, name="m")
    with pytest.raises(InputError, match="too few frames"):
        jobs.check_model_fits(model, np.zeros((2, 4, 5)), dt=0.1, name="m")


def test_maps_over_the_memory_limit_are_not_kept(monkeypatch):
    monkeypatch.setattr(jobs, "MAX_MAP_BYTES", 4 * 11 * 4 * 5 - 1)
    movie = np.zeros((12, 4, 5), np.float32)
    assert not jobs.maps_fit(movie.shape)
    _, out = run_generator(jobs.maps(FakeModel(), movie, dt=0.1, name="m"))
    assert out.maps is None and out.frame_limits is None and out.density.shape == (4, 5)


def test_unexpected_errors_are_wrapped_input_errors_are_not():
    class Broken(FakeModel):
        def window_ep(self, movie, *, name="movie"):
            raise RuntimeError("torch says no")

    with pytest.raises(jobs.JobError) as info:
        jobs.estimate(Broken(), np.zeros((5, 4, 5)), dt=0.1, name="m")
    assert isinstance(info.value.original, RuntimeError)
    with pytest.raises(InputError):
        jobs.export_maps(result(maps=False), "never.tif")


def test_export_jobs_write_the_engine_formats(tmp_path):
    import tifffile

    from napari_dissipation.io import read_movie

    res = result()
    csv = jobs.export_trace(res, tmp_path / "trace.csv")
    lines = csv.read_text().splitlines()
    assert lines[0].split(",") == ["movie", "frame", "ep"] and len(lines) == 1 + 9
    tif = jobs.export_maps(res, tmp_path / "maps.tif")
    assert tifffile.imread(tif).shape == (9, 4, 5)
    assert read_movie(tif).dt == pytest.approx(0.1)


@pytest.mark.slow
def test_train_job_yields_progress_and_returns_the_model_then_maps(bead_spring_small):
    from napari_dissipation.estimate import EPEstimator

    movie = bead_spring_small.movies[0][:120]
    est = EPEstimator(max_iterations=20, channels=4, batch_size=32, eval_every=10,
                      eval_windows=100, threads=1, seed=0, frames_per_input=3)
    yielded, out = run_generator(jobs.train(est, movie, dt=0.01, name="chain"))
    assert all(hasattr(r, "iteration") for r in yielded) and len(yielded) > 1
    assert out.model is est.model_ and out.fit.iterations == 20
    assert out.fit.frames_per_input == 3 and not out.window_chosen  # set, not chosen
    assert out.ep.shape == (119,)
    _, maps = run_generator(jobs.maps(out.model, movie, dt=0.01, name="chain"))
    assert maps.maps.shape == (119, 20, 40)
    np.testing.assert_allclose(maps.maps.sum(axis=(1, 2)), out.ep, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(maps.density, out.model.ep_rate_density(movie, dt=0.01),
                               rtol=1e-4, atol=1e-6)
