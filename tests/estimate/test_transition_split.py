"""A window's ΔS_θ split over its transitions: exact identities, and the trace built from it.

ΔS_θ is linear in the odd channels, and odd channel j is the sum of the frame differences
it spans, so each transition of a k-frame window carries its own displacement times the
force.  These tests check the identities with random weights (nothing cancels by luck);
what the split gains against exact per-transition EP is measured in
``benchmarks/bench_nonlinear.py`` and ``docs/benchmarks.md``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_dissipation.estimate.model import EPNet
from napari_dissipation.estimate.stats import TransitionMean, per_transition


def _random_net(k: int, shape=(12, 16), seed: int = 0) -> EPNet:
    net = EPNet(frames_per_input=k, frame_shape=shape)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        net.patterns.copy_(torch.randn(net.patterns.shape, generator=gen) * 0.1)
    return net.eval()


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_shares_add_up_to_the_window_and_to_its_pixels(k):
    net = _random_net(k, seed=k)
    x = torch.randn(5, k, 12, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        shares = net.transition_contributions(x)
        pixels = net.transition_contributions(x, pixels=True)
        total = net(x)
    assert shares.shape == (5, k - 1) and pixels.shape == (5, k - 1, 12, 16)
    assert torch.all(total.abs() > 1e-3)
    torch.testing.assert_close(shares.sum(dim=1), total, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pixels.sum(dim=(2, 3)), shares, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pixels.sum(dim=1), net.pixel_contributions(x),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k", [3, 4, 6])
def test_a_reversed_window_gives_each_transition_minus_its_share(k):
    """Reversing the frames reverses the order of the transitions and the sign of each
    displacement; the force is even: the share of transition t becomes minus that of
    transition k − 2 − t."""
    net = _random_net(k, seed=10 + k)
    x = torch.randn(4, k, 12, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        forward = net.transition_contributions(x)
        backward = net.transition_contributions(torch.flip(x, dims=[1]))
    torch.testing.assert_close(backward, -torch.flip(forward, dims=[1]), rtol=1e-4, atol=1e-5)


def test_only_the_moving_transition_carries_ep():
    """Three frames where only the second step moves: the first transition carries
    nothing, where an even split would give it half of the window's ΔS."""
    net = _random_net(3, seed=5)
    gen = torch.Generator().manual_seed(3)
    still = torch.randn(2, 1, 12, 16, generator=gen)
    moved = still + torch.randn(2, 1, 12, 16, generator=gen)
    x = torch.cat([still, still, moved], dim=1)
    with torch.no_grad():
        shares = net.transition_contributions(x)
    assert torch.all(shares[:, 0] == 0) and torch.all(shares[:, 1].abs() > 1e-3)


def test_per_transition_means_the_shares_of_the_windows_that_hold_it():
    shares = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # k = 3: 3 windows, 4 transitions
    out = per_transition(shares)
    np.testing.assert_allclose(out, [1.0, (2.0 + 3.0) / 2, (4.0 + 5.0) / 2, 6.0])
    np.testing.assert_array_equal(per_transition(shares[:, :1]), shares[:, 0])
    # in pieces, as the maps are built batch by batch, it is the same, whatever room the
    # running sums were given at first
    for capacity in (4, 1):
        mean = TransitionMean(capacity)
        mean.add(0, shares[:2])
        mean.add(2, shares[2:])
        np.testing.assert_allclose(mean.result(), out)
    maps = np.arange(3 * 2 * 2 * 3, dtype=np.float32).reshape(3, 2, 2, 3)
    assert per_transition(maps).shape == (4, 2, 3) and per_transition(maps).dtype == np.float32
