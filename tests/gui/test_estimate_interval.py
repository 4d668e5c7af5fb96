"""The rate and interval that Estimate shows (``TrainedModel.ep_rate_ci``), against the
exact EP of the 2-bead chain.

Estimate applies a trained model to a whole movie: its rate counts every transition, and
its interval comes from 20 contiguous time blocks of the movie taken as independent
units.  It covers the scatter of the model's rate over the blocks, so it is checked
against the exact EP of the same transitions (what this movie carried); the exact rate of
the process (2.025 k_B/s) differs from that by the movie's own scatter (10-35% for 60 s of
movie), which is printed, not asserted.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_dissipation import simulate

pytestmark = pytest.mark.slow

DT = 0.01
CHAIN = {"n_beads": 2, "t_cold": 1.0, "t_hot": 10.0, "n_movies": 1, "n_frames": 6000,
         "dt": DT}


@pytest.fixture(scope="module")
def model():
    import torch

    from napari_dissipation.estimate import EPEstimator

    torch.set_num_threads(1)
    train = simulate.bead_spring(seed=31, **CHAIN)
    est = EPEstimator(max_iterations=200, max_seconds=None, threads=1, seed=0,
                      frames_per_input=2)
    est.fit(train.movies[0], dt=DT)
    return est.model_


@pytest.mark.parametrize("seed", [32, 33, 34])
def test_the_interval_on_a_fresh_movie_holds_the_exact_ep_of_its_transitions(model, seed):
    fresh = simulate.bead_spring(seed=seed, **CHAIN)
    movie = fresh.movies[0]
    rate, (lo, hi) = model.ep_rate_ci(movie, dt=DT)
    same = float(np.mean(fresh.truth.step_ep[0])) / DT  # exact EP of these transitions
    print(f"seed {seed}: {rate:.3f} k_B/s (95% CI {lo:.3f}-{hi:.3f}); exact EP of the "
          f"same transitions {same:.3f}, exact rate {fresh.truth.ep_rate:.3f}")
    assert rate == pytest.approx(model.ep_rate(movie, dt=DT), rel=1e-9)  # one quantity
    assert lo < same < hi
    assert rate == pytest.approx(same, rel=0.15)  # bias against the same transitions
    assert hi - lo < same  # an interval that says something


def test_a_handful_of_frames_gives_no_narrow_interval(model):
    movie = simulate.bead_spring(seed=35, **CHAIN).movies[0][:5]
    rate, (lo, hi) = model.ep_rate_ci(movie, dt=DT)
    assert hi - lo > 10 * 2.025  # 4 transitions cannot pin a rate of about 2 k_B/s
