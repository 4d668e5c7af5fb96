"""A long movie that is really several movies glued together gets a warning."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dissipation import simulate
from napari_dissipation.io.glued import THRESHOLD, find_joins, glued_warnings

FRAMES = 1500


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_two_simulated_movies_glued_are_found_one_is_not(seed):
    """5-bead chains, 1500 frames: measured over seeds 0-7, the join scores 13-58 (read
    noise 0.1: 8-39) against a threshold of 10; 48 single movies (2 and 5 beads, read noise
    0-0.3) scored at most 6.5."""
    sim = simulate.bead_spring(n_beads=5, n_movies=2, n_frames=FRAMES, dt=0.01, seed=seed)
    single, other = sim.movies
    assert glued_warnings(single, name="one.tif") == []
    joins, score = find_joins(single)
    assert joins == [] and score < THRESHOLD
    glued = np.concatenate([single, other])
    [warning] = glued_warnings(glued, name="glued.tif")
    assert warning.startswith(f"glued.tif: the image jumps between frames {FRAMES - 1} -> "
                              f"{FRAMES},")
    assert "glued together" in warning


def test_several_joins_a_brightness_step_and_short_movies():
    rng = np.random.default_rng(4)
    noise = rng.normal(100, 5, (1500, 16, 16)).astype(np.float32)
    assert find_joins(noise)[0] == []
    stepped = noise.copy()
    stepped[500:] += 4  # another recording, brighter
    stepped[1000:] -= 8
    assert find_joins(stepped)[0] == [499, 999]
    drifting = noise + np.cumsum(rng.normal(0, 1, (1500, 1, 1)), axis=0)  # flicker
    assert find_joins(drifting)[0] == []
    assert glued_warnings(noise[:30]) == []  # too few transitions to tell
    static = np.zeros((100, 8, 8), np.uint8)
    static[60:] = 1
    assert find_joins(static)[0] == [59]
