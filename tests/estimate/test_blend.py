"""The warm start's average of read-outs: its Newton fits, and the noise of the average."""

from __future__ import annotations

import numpy as np
import torch

from napari_dissipation.estimate.candidates import _features, padded_theta
from napari_dissipation.estimate.readout import maximise_neep, readout_sd


def _bilinear_data(n=4000, m=3, seed=0):
    """Coordinates (N, 1, m) of a driven linear system's windows and their units."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, m, generator=g, dtype=torch.float64)
    dz = 0.3 * torch.randn(n, 1, m, generator=g, dtype=torch.float64) + 0.05 * z.roll(1, -1)
    units = np.repeat(np.arange(20), n // 20)
    return z.float(), dz.float(), units


def test_a_start_changes_the_steps_not_the_optimum():
    z, dz, _ = _bilinear_data()
    f = _features(z, dz)
    zero = torch.zeros(f.shape[1], dtype=torch.float64)
    plain, _, after, steps = maximise_neep(f, zero, lam=1e-4)
    near, _, after_near, steps_near = maximise_neep(f, zero, lam=1e-4, start=0.9 * plain)
    assert torch.allclose(near, plain, atol=1e-6)
    assert after_near == after or abs(after_near - after) < 1e-10
    assert steps_near <= steps
    # A start worse than θ_0 is not used.
    far, *_ = maximise_neep(f, zero, lam=1e-4, start=-50 * plain)
    assert torch.allclose(far, plain, atol=1e-6)


def test_padding_a_fit_keeps_its_read_out():
    z, dz, _ = _bilinear_data(m=5)
    theta = torch.randn(1 * 3 * (1 * 3 + 1), dtype=torch.float64)
    small = _features(z[:, :, :3], dz[:, :, :3]).double() @ theta
    large = _features(z, dz).double() @ padded_theta(theta, 1, 1, 3, 5)
    assert torch.allclose(small, large, atol=1e-10)


def test_the_noise_of_an_average_is_that_of_its_members_fits():
    z, dz, units = _bilinear_data()
    f = _features(z, dz)
    zero = torch.zeros(f.shape[1], dtype=torch.float64)
    theta, *_ = maximise_neep(f, zero, lam=1e-4)
    direction = f.double().mean(dim=0)
    one = readout_sd(f, units, theta, 0.0, direction)
    assert one > 0
    # One block holding every column is the plain sandwich.
    assert abs(readout_sd(f, units, theta, 0.0, direction, [np.arange(f.shape[1])]) - one) \
        < 1e-12 * one
    # Two copies of one fit, averaged: the same read-out, the same noise, although the
    # joint curvature of the duplicated columns is singular.
    twice = torch.cat([f, f], dim=1)
    p = f.shape[1]
    sd = readout_sd(twice, units, torch.cat([theta, theta]) / 2, 0.0,
                    torch.cat([direction, direction]), [np.arange(p), np.arange(p, 2 * p)])
    assert abs(sd - one) < 1e-9 * one


def test_a_tile_fit_from_the_last_counts_optimum_reaches_the_same_optimum():
    from napari_dissipation.estimate.tiles import _boosted_fit

    z, dz, _ = _bilinear_data(n=6000, m=6)
    half = len(z) // 2
    coords = (z[:half], dz[:half], z[half:], dz[half:])
    small = [np.arange(0, 2), np.arange(3, 5)]  # two tiles of 3 patterns, 2 used
    large = [np.arange(0, 3), np.arange(3, 6)]
    first = _boosted_fit(coords, small)
    starts = [padded_theta(th, 1, 1, 2, 3) for th in first["thetas"]]
    plain = _boosted_fit(coords, large)
    started = _boosted_fit(coords, large, starts)
    assert torch.allclose(started["theta"], plain["theta"], atol=1e-6)
    assert abs(started["val_objective"] - plain["val_objective"]) < 1e-9
