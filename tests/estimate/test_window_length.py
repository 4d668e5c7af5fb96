"""The window length chosen from the data, and the lower bound said as such."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_dissipation import EPEstimator, simulate
from napari_dissipation.estimate.data import MovieSet
from napari_dissipation.estimate.stats import split_units
from napari_dissipation.estimate.window_length import (
    choose_window_length,
    scan_window_lengths,
)


def _units(means, n=20, sd=0.05, seed=0):
    rng = np.random.default_rng(seed)
    common = rng.normal(0, 0.3, n)  # unit-to-unit scatter shared by every k (paired)
    return {k: m + common + rng.normal(0, sd, n) for k, m in means.items()}


def test_choice_stops_where_the_rate_stops_rising():
    k, rising = choose_window_length(_units({2: 1.0, 3: 1.3, 4: 1.5, 6: 1.52, 8: 1.5}))
    assert (k, rising) == (4, False)


def test_a_rate_still_rising_at_the_end_is_flagged():
    k, rising = choose_window_length(_units({2: 1.0, 3: 1.2, 4: 1.4, 6: 1.6}))
    assert (k, rising) == (6, True)


def test_flat_or_noisy_rates_keep_two_frames():
    assert choose_window_length(_units({2: 1.0, 3: 1.0, 4: 0.99, 6: 1.01})) == (2, False)
    assert choose_window_length(_units({2: 0.0, 3: 0.0, 4: 0.0}, sd=0.2)) == (2, False)
    assert choose_window_length({}) == (2, False)


def _scan(sim, seed=0):
    data = MovieSet(sim.movies, frames_per_input=2)
    rng = np.random.default_rng(seed)
    norm = data.normalisation(rng)
    split = split_units(data.lengths, validation_fraction=0.2, test_fraction=0.25, rng=rng)
    torch.set_num_threads(1)
    return scan_window_lengths(data, split, norm, window_seconds=sim.dt,
                               device=torch.device("cpu"), seed=seed, n_patterns=16)


@pytest.fixture(scope="module")
def noisy():
    """2-bead chain at 30% read noise: two frames carry about a quarter of the EP."""
    return simulate.bead_spring(n_beads=2, t_cold=1.0, t_hot=10.0, n_movies=10,
                                n_frames=3000, dt=0.01, seed=21, read_noise=0.3)


def test_noise_asks_for_longer_windows(noisy):
    scan = _scan(noisy)
    rates = {e["k"]: e["rate"] for e in scan.curve}
    assert scan.chosen >= 4
    # Longer windows recover EP that noise hides in two frames (the exact attainable
    # share rises from 0.28 at k = 2 to 0.7 at k = 8 for this noise).
    assert rates[scan.chosen] > 1.5 * rates[2]
    assert rates[scan.chosen] < 1.15 * noisy.truth.ep_rate


def test_a_window_whose_fit_does_not_generalise_ends_the_scan(noisy, monkeypatch):
    """A k whose held-out objective is worse than ΔS ≡ 0's takes no part in the choice."""
    from napari_dissipation.estimate import window_length as wl

    real = wl._one_length

    def overfit_from_4(coords, k, *args):
        entry, rates = real(coords, k, *args)
        if entry is not None and k >= 4:
            entry["validation_bound"] = -1.0
        return entry, rates

    monkeypatch.setattr(wl, "_one_length", overfit_from_4)
    scan = _scan(noisy)
    assert [e["k"] for e in scan.curve] == [2, 3, 4]
    assert scan.curve[-1]["generalises"] is False
    assert "generalises" not in scan.curve[0]
    assert scan.chosen <= 3


def test_clean_chain_keeps_short_windows(bead_spring_small):
    scan = _scan(bead_spring_small)
    assert scan.chosen <= 3
    # The held-out objective bounds the EP from below: within noise (10%), never above the
    # exact rate, and not above the mean rate it is measured beside.
    for e in scan.curve:
        assert e["validation_bound"] <= 1.1 * bead_spring_small.truth.ep_rate
        assert e["validation_bound"] <= e["validation_rate"] + 1e-9


def test_no_driving_gives_no_curve_and_two_frames():
    sim = simulate.bead_spring(n_beads=2, t_cold=3.0, t_hot=3.0, n_movies=8, n_frames=1000,
                               dt=0.01, seed=5, read_noise=0.3)
    scan = _scan(sim)
    assert scan.chosen == 2 and not scan.still_rising
    for e in scan.curve:  # any fit that was significant by chance stays near zero
        assert abs(e["rate"]) < 0.1 * 2.025


def test_fixed_short_window_on_noisy_movies_is_a_lower_bound(noisy):
    est = EPEstimator(frames_per_input=2, max_iterations=1, channels=0, threads=1, seed=0)
    result = est.fit(noisy.movies, dt=noisy.dt)
    assert result.frames_per_input == 2
    assert result.lower_bound
    assert any("higher rate" in r for r in result.lower_bound_reasons)
    summary = result.summary()
    assert summary["lower_bound"] is True and summary["frames_per_input"] == 2
    assert [e["k"] for e in summary["rate_by_window"]][:3] == [2, 3, 4]


@pytest.mark.parametrize("n_frames", [3, 5, 60])
def test_too_few_frames_is_one_clear_refusal(n_frames):
    from napari_dissipation import InputError

    sim = simulate.bead_spring(n_beads=2, n_movies=1, n_frames=n_frames, dt=0.01, seed=1)
    with pytest.raises(InputError, match=f"{n_frames} frames in all are too few .* needed"):
        EPEstimator(max_iterations=5, threads=1).fit(sim.movies, dt=0.01)


def test_a_short_movie_is_cannot_tell_not_a_narrow_interval():
    sim = simulate.bead_spring(n_beads=2, n_movies=1, n_frames=120, dt=0.01, seed=1)
    result = EPEstimator(max_iterations=5, threads=1, channels=0).fit(sim.movies, dt=0.01)
    lo, hi = result.ep_rate_ci
    assert hi - lo > 2 * sim.truth.ep_rate  # an interval wider than the rate says little


def test_time_profiles_are_written_back_exactly():
    """A read-out fitted on projected channels is the same function of the full ones."""
    from napari_dissipation.estimate.model import linear_branch_features
    from napari_dissipation.estimate.temporal import expand_theta, project, temporal_basis
    gen = torch.Generator().manual_seed(0)
    k, m = 16, 3
    z = torch.randn(50, 8, m, generator=gen, dtype=torch.float64)
    dz = torch.randn(50, 8, m, generator=gen, dtype=torch.float64)
    even, odd = temporal_basis(k, 8), temporal_basis(k, 8)
    assert even.shape == (8, 4) and np.allclose(even.T @ even, np.eye(4))
    assert temporal_basis(8, 4) is None  # short windows keep every frame pair
    reduced = linear_branch_features(project(z, even).flatten(1), project(dz, odd).flatten(1))
    theta = torch.randn(reduced.shape[1], generator=gen, dtype=torch.float64)
    full = linear_branch_features(z.flatten(1), dz.flatten(1))
    theta_full = expand_theta(theta, [np.arange(m)], even, odd, 8, 8)
    assert torch.allclose(reduced @ theta, full @ theta_full, atol=1e-10)


def test_a_higher_rate_from_a_fit_that_did_not_generalise_makes_a_lower_bound():
    from types import SimpleNamespace

    from napari_dissipation.estimate.estimator import _lower_bound_reasons
    from napari_dissipation.estimate.window_length import WindowScan

    curve = [{"k": 2, "validation_rate": 11.1}, {"k": 3, "validation_rate": 11.0},
             {"k": 4, "validation_rate": 12.6, "generalises": False}]
    outcome = SimpleNamespace(history=[], iterations=0, stop_reason="early stopping",
                              best_iteration=0)
    cfg = SimpleNamespace(eval_every=200)
    reasons = _lower_bound_reasons(WindowScan(curve=curve, chosen=2), 2, cfg, outcome)
    assert len(reasons) == 1 and "windows of 4 frames read a higher rate" in reasons[0]
    curve[-1]["validation_rate"] = 10.0  # lower: nothing suggests more EP beyond
    assert _lower_bound_reasons(WindowScan(curve=curve, chosen=2), 2, cfg, outcome) == []
