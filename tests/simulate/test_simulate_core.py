"""Exact linear-diffusion core and the bead-spring chain."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from napari_dissipation import InputError, simulate
from napari_dissipation.simulate import LinearDiffusion, bead_spring_model


def closed_form_n5(tc, th, gamma=1.0):
    return ((tc - th) ** 2 * (111 * tc**2 + 430 * tc * th + 111 * th**2)
            / (495 * tc * th * (3 * tc + th) * (tc + 3 * th) * gamma))


@pytest.mark.parametrize("k,gamma", [(1.0, 1.0), (2.5, 0.7)])
def test_two_bead_closed_form(k, gamma):
    tc, th = 1.0, 10.0
    model = bead_spring_model([tc, th], k=k, gamma=gamma)
    expected = k * (th - tc) ** 2 / (4 * gamma * th * tc)
    assert model.ep_rate() == pytest.approx(expected, rel=1e-10)
    if k == gamma == 1.0:
        assert model.ep_rate() == pytest.approx(2.025, rel=1e-12)


@pytest.mark.parametrize("tc,th", [(1.0, 10.0), (2.0, 3.0)])
def test_five_bead_closed_form(tc, th):
    model = bead_spring_model(np.linspace(tc, th, 5))
    assert model.ep_rate() == pytest.approx(closed_form_n5(tc, th), rel=1e-10)
    if (tc, th) == (1.0, 10.0):
        assert model.ep_rate() == pytest.approx(0.6298, abs=5e-5)


def test_bead_spring_truth_matches_closed_forms():
    sim2 = simulate.bead_spring(n_movies=1, n_frames=10, seed=0)
    sim5 = simulate.bead_spring(5, n_movies=1, n_frames=10, seed=0)
    assert sim2.truth.ep_rate == pytest.approx(2.025, rel=1e-12)
    assert sim5.truth.ep_rate == pytest.approx(closed_form_n5(1.0, 10.0), rel=1e-10)
    assert sim2.movies.shape == (1, 10, 20, 40) and sim2.movies.dtype == np.uint8
    assert sim5.movies.shape == (1, 10, 20, 100)


def test_stationary_covariance_solves_lyapunov(rng):
    model = bead_spring_model(rng.uniform(0.5, 5.0, 4), k=1.3, gamma=0.8)
    A, D, C = model.drift, model.diffusion, model.stationary_covariance()
    np.testing.assert_allclose(A @ C + C @ A.T, -2 * D, atol=1e-12)
    F, Q = model.transition(0.05)
    np.testing.assert_allclose(Q, C - F @ C @ F.T)
    assert np.linalg.eigvalsh(Q).min() > 0


def test_random_four_bead_sampling_and_step_ep_agree_with_analytic(rng):
    temps = rng.uniform(0.5, 8.0, 4)
    model = bead_spring_model(temps)
    dt = 0.05
    x = model.sample(300, 400, dt, rng)
    C = model.stationary_covariance()
    F, _ = model.transition(dt)
    # Independent trajectories -> independent estimates; their scatter is the error.
    per_traj_cov = np.einsum("mti,mtj->mij", x, x) / x.shape[1]
    mean_cov = per_traj_cov.mean(0)
    se = per_traj_cov.std(0, ddof=1) / np.sqrt(x.shape[0])
    assert np.all(np.abs(mean_cov - C) < 4.5 * se)
    lag = np.einsum("mti,mtj->mij", x[:, 1:], x[:, :-1]).mean(0) / (x.shape[1] - 1)
    np.testing.assert_allclose(lag, F @ C, atol=0.05 * np.abs(C).max())

    s = model.step_ep(x, dt)
    assert s.shape == (300, 399)
    per_traj = s.mean(1)
    se_s = per_traj.std(ddof=1) / np.sqrt(per_traj.size)
    assert abs(per_traj.mean() - model.step_ep_mean(dt)) < 4 * se_s
    assert model.step_ep_mean(dt) > 0


def test_step_ep_equals_log_ratio_of_path_probabilities(rng):
    model = bead_spring_model(rng.uniform(0.5, 5.0, 3))
    dt = 0.1
    x = model.sample(2, 6, dt, rng)
    F, Q = model.transition(dt)
    p = multivariate_normal(np.zeros(3), model.stationary_covariance())
    for traj, s in zip(x, model.step_ep(x, dt), strict=True):
        for t in range(len(traj) - 1):
            a, b = traj[t], traj[t + 1]
            fwd = p.logpdf(a) + multivariate_normal(F @ a, Q).logpdf(b)
            bwd = p.logpdf(b) + multivariate_normal(F @ b, Q).logpdf(a)
            assert s[t] == pytest.approx(fwd - bwd, rel=1e-8, abs=1e-10)
    # 2-D input gives one trajectory.
    np.testing.assert_allclose(model.step_ep(x[0], dt), model.step_ep(x, dt)[0])


def test_discrete_rate_tends_to_continuous_rate():
    model = bead_spring_model([1.0, 4.0, 10.0])
    rate = model.ep_rate()
    previous = 0.0
    for dt in (0.5, 0.1, 0.01, 1e-4):
        discrete = model.step_ep_mean(dt) / dt
        assert previous <= discrete <= rate * (1 + 1e-9)
        previous = discrete
    assert previous == pytest.approx(rate, rel=1e-3)


def test_per_dof_rates_sum_to_total(rng):
    for n in (2, 4, 7):
        model = bead_spring_model(rng.uniform(0.3, 9.0, n), k=rng.uniform(0.5, 2))
        dof = model.ep_rate_per_dof()
        assert dof.shape == (n,) and np.all(dof >= 0)
        assert dof.sum() == pytest.approx(model.ep_rate(), rel=1e-10)


def test_general_drift_per_dof_sum():
    # A non-symmetric drift (a rotating force) with an isotropic diffusion.
    A = np.array([[-1.0, 0.8], [-0.8, -1.0]])
    model = LinearDiffusion(A, 0.5 * np.eye(2))
    # For A = -a I + w J and D = d I the rate is 2 w^2 / a.
    assert model.ep_rate() == pytest.approx(2 * 0.8**2 / 1.0, rel=1e-10)
    assert model.ep_rate_per_dof().sum() == pytest.approx(model.ep_rate(), rel=1e-10)


def test_equal_temperatures_give_zero():
    sim = simulate.bead_spring(3, t_cold=2.0, t_hot=2.0, n_movies=2, n_frames=200, seed=3)
    assert abs(sim.truth.ep_rate) < 1e-12
    assert np.abs(sim.truth.dof_ep_rate).max() < 1e-12
    assert np.abs(sim.truth.step_ep).max() < 1e-10
    assert abs(sim.truth.step_ep_mean) < 1e-12
    assert np.abs(sim.truth.map).max() < 1e-12


def test_seeded_runs_are_reproducible():
    kw = dict(n_movies=2, n_frames=50, photons=50.0, read_noise=0.1)
    a = simulate.bead_spring(seed=7, **kw)
    b = simulate.bead_spring(seed=7, **kw)
    c = simulate.bead_spring(seed=8, **kw)
    np.testing.assert_array_equal(a.movies, b.movies)
    np.testing.assert_array_equal(a.truth.step_ep, b.truth.step_ep)
    assert not np.array_equal(a.movies, c.movies)
    assert not np.allclose(a.positions, c.positions)


def test_temperature_profile_and_override():
    sim = simulate.bead_spring(4, 1.0, 7.0, n_movies=1, n_frames=5)
    assert sim.truth.info["temperatures"] == pytest.approx([1.0, 3.0, 5.0, 7.0])
    sim = simulate.bead_spring(3, temperatures=[2.0, 1.0, 5.0], n_movies=1, n_frames=5)
    assert sim.truth.info["temperatures"] == [2.0, 1.0, 5.0]
    with pytest.raises(InputError):
        simulate.bead_spring(3, temperatures=[1.0, 2.0], n_movies=1, n_frames=5)


@pytest.mark.parametrize("kwargs", [dict(n_frames=1), dict(dt=0.0), dict(dt=-1.0),
                                    dict(n_movies=0), dict(t_cold=-1.0), dict(n_beads=0)])
def test_bad_options_raise_input_error(kwargs):
    args = dict(n_movies=1, n_frames=10) | kwargs
    with pytest.raises(InputError):
        simulate.bead_spring(**args)


def test_truth_map_and_regions():
    sim = simulate.bead_spring(n_movies=1, n_frames=20, seed=0)
    truth = sim.truth
    assert truth.map.shape == (20, 40)
    assert truth.map.sum() == pytest.approx(truth.ep_rate, rel=1e-10)
    # Each bead's rate lies around its own half of the frame.
    left, right = truth.map[:, :20].sum(), truth.map[:, 20:].sum()
    np.testing.assert_allclose([left, right], truth.dof_ep_rate, rtol=1e-3)
    (region,) = truth.regions
    assert region.mask.all() and region.ep_rate == pytest.approx(truth.ep_rate)
    d = sim.to_dict()
    assert d["ep_rate"] == pytest.approx(2.025) and d["dt"] == 0.01
    assert len(d["map"]) == 20 and d["pixel_size"] == 1.0


def test_bead_centroids_follow_positions():
    sim = simulate.bead_spring(n_movies=1, n_frames=40, seed=2, bit_depth=16)
    rows, cols = np.mgrid[:20, :20]
    for b in range(2):
        half = sim.movies[0, :, :, 20 * b:20 * b + 20].astype(np.float64)
        x = sim.positions[0, :, b]
        inside = np.abs(x) < 4  # away from the half's edges
        mass = half.sum(axis=(1, 2))
        centroid = (half * cols).sum(axis=(1, 2)) / mass
        np.testing.assert_allclose(centroid[inside], 9.5 + x[inside], atol=0.1)
        np.testing.assert_allclose(((half * rows).sum(axis=(1, 2)) / mass)[inside], 9.5,
                                   atol=0.1)


def test_window_irreversibility_exact_cases():
    model = bead_spring_model([1.0, 4.0, 2.0, 7.0, 3.0])
    dt = 0.05
    # Every coordinate, no noise, two frames: the mean step EP.
    assert model.window_irreversibility(2, dt) == pytest.approx(model.step_ep_mean(dt), rel=1e-9)
    # Markov: k frames carry k - 1 times the step EP.
    assert model.window_irreversibility(5, dt) == pytest.approx(4 * model.step_ep_mean(dt),
                                                                rel=1e-8)
    # One coordinate of a stationary Gaussian process is reversible; so is equilibrium.
    assert abs(model.window_irreversibility(6, dt, observed=[2])) < 1e-10
    eq = bead_spring_model([2.0] * 5)
    assert abs(eq.window_irreversibility(4, dt, observed=[0, 2, 4], noise_sd=0.3)) < 1e-10
    # Hiding coordinates or adding noise can only lose irreversibility.
    full = model.window_irreversibility(3, dt)
    assert 0 < model.window_irreversibility(3, dt, observed=[0, 2, 4]) < full
    assert 0 < model.window_irreversibility(3, dt, noise_sd=0.2) < full
    # A matrix of observed combinations: an invertible one loses nothing, the index rows
    # of a subset are that subset, and a noise covariance acts like its sd.
    mix = np.random.default_rng(1).normal(size=(5, 5))
    assert model.window_irreversibility(2, dt, observed=mix) == pytest.approx(
        model.step_ep_mean(dt), rel=1e-6)
    rows = np.eye(5)[[0, 2, 4]]
    assert model.window_irreversibility(3, dt, observed=rows, noise_cov=0.04 * np.eye(3)) \
        == pytest.approx(model.window_irreversibility(3, dt, observed=[0, 2, 4], noise_sd=0.2),
                         rel=1e-9)


def test_window_irreversibility_matches_sampled_log_ratio(rng):
    # Monte Carlo: the mean of ln p(window) - ln p(reversed window) over sampled windows.
    model = bead_spring_model([1.0, 20.0, 2.0])
    dt, k, obs, sd = 0.3, 3, [0, 1], 0.2
    x = model.sample(400, 60, dt, rng=rng)[..., obs]
    y = x + sd * rng.standard_normal(x.shape)
    windows = np.stack([y[:, j: y.shape[1] - k + 1 + j] for j in range(k)], axis=2)
    w = windows.reshape(-1, k * len(obs))
    rev = windows[:, :, ::-1].reshape(-1, k * len(obs))
    cov = np.cov(w.T)
    cov_rev = np.cov(rev.T)
    log_ratio = (multivariate_normal(cov=cov).logpdf(w)
                 - multivariate_normal(cov=cov_rev).logpdf(w))
    exact = model.window_irreversibility(k, dt, observed=obs, noise_sd=sd)
    assert exact > 0.5
    assert np.mean(log_ratio) == pytest.approx(exact, rel=0.1)
