"""The polynomial read-out (estimate.nonlinear) and EPNet's polynomial branch.

Against exact truth: the anharmonic chain's positions (k4 = 3, dt = 0.005 s, where two
frames carry most of a transition's EP: least squares on the cubic features reach R² about
0.91 against the exact EP of each transition), the linear chain (the branch must stay off)
and a chain at one temperature (no driving: nothing is fitted).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_dissipation import simulate
from napari_dissipation.estimate.candidates import _fit
from napari_dissipation.estimate.model import EPNet, monomial_exponents
from napari_dissipation.estimate.nonlinear import (
    add_polynomial,
    even_weights,
    poly_features,
    set_polynomial,
)
from napari_dissipation.estimate.temporal import project, temporal_basis
from napari_dissipation.estimate.trained import _current_keys


def _random_net(k: int, seed: int = 0) -> EPNet:
    gen = torch.Generator().manual_seed(seed)
    net = EPNet(frames_per_input=k, frame_shape=(12, 20), channels=4, n_patterns=6)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        net.patterns.copy_(torch.randn(net.patterns.shape, generator=gen) * 0.1)
    mask = np.zeros(net.poly_mask.shape)
    mask[:, :7] = 1.0
    net.set_polynomial(torch.randn(net.poly_mask.shape, generator=gen).numpy(), mask)
    return net


def test_monomials_of_fewer_variables_and_lower_degree_come_first():
    e = monomial_exponents(4, 3)
    assert e.shape == (10 + 20, 4) and set(e.sum(axis=1)) == {2, 3}
    assert (e[:10].sum(axis=1) == 2).all()
    small = {tuple(r) + (0, 0) for r in monomial_exponents(2, 3)}
    assert small <= {tuple(r) for r in e}


@pytest.mark.parametrize("k", [2, 3, 4])
def test_polynomial_branch_keeps_the_output_antisymmetric_and_split_over_pixels(k):
    net = _random_net(k)
    x = torch.randn(5, k, 12, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net(x)
        assert torch.equal(net(torch.flip(x, dims=[1])), -out)
        torch.testing.assert_close(net.pixel_contributions(x).sum(dim=(1, 2)), out,
                                   rtol=1e-4, atol=1e-4)
        # The polynomial branch is part of the linear read-out: F θ = ΔS_θ, and writing θ
        # back changes nothing.
        theta = net.readout_params().double()
        torch.testing.assert_close(net.readout_features(x).double() @ theta, out.double(),
                                   rtol=1e-4, atol=1e-3)
        net.set_readout_params(theta * 1.5)
        torch.testing.assert_close(net(x).double(), 1.5 * out.double(), rtol=1e-4, atol=1e-3)
        cols = net.readout_columns()
    n_poly_on = int(net.poly_mask.sum())
    assert n_poly_on > 0 and len(cols) >= n_poly_on


def test_older_model_files_load_with_the_branch_off():
    net = _random_net(2)
    old = {key: v for key, v in net.state_dict().items() if key not in ("g_poly", "poly_mask")}
    fresh = EPNet(frames_per_input=2, frame_shape=(12, 20), channels=4, n_patterns=6)
    fresh.load_state_dict(_current_keys(dict(old), fresh.state_dict()))
    assert float(fresh.poly_mask.abs().sum()) == 0.0


@pytest.mark.parametrize("k", [2, 10])
def test_a_fitted_branch_is_written_into_the_model_exactly(k):
    """The fit's features (on time profiles for k = 10) and the model agree."""
    net = EPNet(frames_per_input=k, frame_shape=(12, 20), channels=0, n_patterns=6)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        net.patterns.copy_(torch.randn(net.patterns.shape, generator=gen) * 0.2)
    x = torch.randn(7, k, 12, 20, generator=gen)
    even = torch.stack([x[:, j] + x[:, k - 1 - j] for j in range(net.n_even)], 1)
    odd = torch.stack([x[:, k - 1 - j] - x[:, j] for j in range(net.n_odd)], 1)
    z = torch.einsum("bepq,kpq->bek", even, net.patterns)
    dz = torch.einsum("bopq,kpq->bok", odd, net.patterns)
    eb, ob = temporal_basis(k, net.n_even), temporal_basis(k, net.n_odd)
    zp, dzp = project(z, eb), project(dz, ob)
    q, degree = 3, 3
    f = poly_features(zp, dzp, np.arange(q), degree, even_weights(eb, net.n_even))
    theta = torch.randn(f.shape[1], generator=gen, dtype=torch.float64)
    spec = {"n_coords": q, "degree": degree, "n_linear": 0}
    set_polynomial(net, {"theta": theta, "spec": spec, "odd_basis": ob})
    with torch.no_grad():
        torch.testing.assert_close(net(x).double(), f.double() @ theta, rtol=1e-4, atol=1e-3)
    set_polynomial(net, None)
    with torch.no_grad():
        assert float(net(x).abs().max()) == 0.0


def _pairs(x: np.ndarray):
    """Coordinates (N, 1, n) of the frame pairs of positions (M, T, n): sum and change."""
    z = torch.as_tensor(x[:, :-1] + x[:, 1:], dtype=torch.float32).reshape(-1, 1, x.shape[-1])
    dz = torch.as_tensor(x[:, 1:] - x[:, :-1], dtype=torch.float32).reshape(-1, 1, x.shape[-1])
    return z, dz


def _fits(sim, n_fit: int):
    """Bilinear fit, then the polynomial branch, on the exact positions (k = 2)."""
    z, dz = _pairs(sim.positions[:n_fit])
    z_ev, dz_ev = _pairs(sim.positions[n_fit:])
    # Held-out units: blocks of 500 transitions, many times the chains' relaxation times.
    units = np.arange(len(z_ev)) // 500
    coords = (z, dz, z_ev, dz_ev)
    block = np.arange(z.shape[-1])
    base = _fit(*coords, [block])
    best, spec = add_polynomial(base, coords, block, units, even_weights(None, 1), 600, [],
                                {})
    truth = sim.truth.step_ep[n_fit:].ravel()
    return base, best, spec, truth


def _r2(ep, truth):
    ep = ep.numpy()
    return 1 - np.mean((ep - truth) ** 2) / np.var(truth)


def test_cubic_force_gets_the_cubic_branch_and_the_exact_ep():
    sim = simulate.anharmonic_chain(n_beads=2, k4=3.0, dt=0.005, n_movies=12, n_frames=3000,
                                    seed=3, cell=8)
    base, best, spec, truth = _fits(sim, 8)
    assert spec is not None and spec["degree"] == 3
    # Measured 0.905 (bilinear 0.72); the rate within 10% of the same transitions' exact
    # EP (measured -6%; the bilinear fit -23%).
    assert _r2(best["ep"], truth) > 0.85 > _r2(base["ep"], truth)
    assert float(best["ep"].mean()) == pytest.approx(truth.mean(), rel=0.10)


def test_linear_force_keeps_the_bilinear_fit():
    sim = simulate.bead_spring(n_beads=2, t_cold=1.0, t_hot=10.0, n_movies=12, n_frames=3000,
                               dt=0.01, seed=4)
    base, best, spec, truth = _fits(sim, 8)
    assert spec is None and best is base
    assert _r2(best["ep"], truth) > 0.95  # measured 0.985


def test_no_driving_gives_no_fit():
    sim = simulate.anharmonic_chain(n_beads=2, t_cold=1.0, t_hot=1.0, k4=1.0, dt=0.005,
                                    n_movies=12, n_frames=3000, seed=5, cell=8)
    assert sim.truth.ep_rate == pytest.approx(0.0, abs=1e-9)
    base, best, spec, _ = _fits(sim, 8)
    assert not base["significant"] and spec is None

