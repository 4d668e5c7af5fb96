"""The pattern-count ladder and what its end says about the rate."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from napari_dissipation.estimate.candidates import PATIENCE, count_limit, ladder_of
from napari_dissipation.estimate.estimator import _lower_bound_reasons
from napari_dissipation.estimate.objective import neep_objective
from napari_dissipation.estimate.tiles import _limit
from napari_dissipation.estimate.window_length import WindowScan

UNITS = np.repeat(np.arange(10), 50)
NOISE = torch.from_numpy(np.random.default_rng(0).normal(0.0, 0.3, len(UNITS)))


def _fits(means: dict):
    """Held-out fits whose ΔS is the same noise about each count's mean: any gain in the
    mean is many standard errors of the paired difference."""
    def fit_of(m):
        ep = means[m] + NOISE
        return {"ep": ep, "val_objective": float(neep_objective(ep)),
                "val_mean_ep": float(ep.mean()), "significant": True}
    return fit_of


def test_a_ladder_still_gaining_at_its_last_count_is_capped_there():
    counts = [2, 3, 4, 6]
    m, best = ladder_of(counts, _fits({2: 0.1, 3: 0.2, 4: 0.3, 6: 0.4}), UNITS, {}, [])
    assert m == 6 and best["capped_at"] == 6
    # Kept one count short of the end, the ladder was still within its patience: capped.
    m, best = ladder_of(counts, _fits({2: 0.1, 3: 0.2, 4: 0.3, 6: 0.25}), UNITS, {}, [])
    assert m == 4 and best["capped_at"] == 6


def test_a_ladder_that_gives_up_before_its_last_count_is_not_capped():
    counts = [2, 3, 4, 6, 8]
    tried = []
    m, best = ladder_of(counts, _fits({2: 0.1, 3: 0.3, 4: 0.2, 6: 0.15, 8: 0.5}), UNITS,
                        {}, tried)
    assert m == 3 and "capped_at" not in best
    assert len(tried) == 2 + PATIENCE  # 8 was never fitted
    # Too few counts to tell a rise: one affordable count says nothing of a cap.
    m, best = ladder_of([2], _fits({2: 0.1}), UNITS, {}, [])
    assert m == 2 and "capped_at" not in best


def test_a_capped_starting_fit_makes_the_rate_a_lower_bound():
    def reasons(warm):
        outcome = SimpleNamespace(history=[{"warm_start": warm}], iterations=0,
                                  stop_reason="warm start unbeaten", best_iteration=0)
        return _lower_bound_reasons(WindowScan(curve=[{"k": 2, "validation_rate": 1.0}]), 2,
                                    SimpleNamespace(eval_every=200), outcome)

    tiles = {"family": "tiles", "n_patterns": 40, "tiles": [[0, 0, 24], [24, 24, 24]],
             "capped_at": 24, "capped_by": "data"}
    assert reasons(tiles) == [
        "the starting fit's pattern count still improved at the most it may take (20 kept "
        "of at most 24 per tile), so the read-out likely resolves less of the motion than "
        "the movie holds, and more frames would let it take more"]
    whole = {"family": "whole", "n_patterns": 6, "tiles": [], "capped_at": 6,
             "capped_by": "slots"}
    assert "(6 kept of at most 6)" in reasons(whole)[0]
    assert reasons(whole)[0].endswith("a larger n_patterns would let it take more")
    # A fit's size limit binds on every long window and says nothing of the data.
    assert reasons(dict(whole, capped_by="size")) == []
    assert reasons(dict(whole, capped_at=None)) == []


def test_what_keeps_the_next_count_out():
    assert count_limit(True, 500, 600, 600, False) == "slots"
    # More slots would not help when the windows cannot afford the next count.
    assert count_limit(True, 700, 600, 2200, False) == "data"
    assert count_limit(True, 5000, 600, 2200, False) == "size"
    assert count_limit(False, 500, 400, 600, False) == "data"
    assert count_limit(False, 700, 600, 600, False) == "size"
    assert count_limit(False, 500, 400, 600, True) == "size"  # windows left out for speed
    assert count_limit(False, None, 600, 600, False) == "size"  # the end of the counts


def test_slots_count_only_when_the_data_afford_the_next_count():
    # Two 28-pattern tiles of two-frame windows: the next count, 32, needs 2 x 32 x 33 =
    # 2112 parameters and 64 slots.  With 56 slots, more slots help only when the
    # training windows afford those parameters.
    model = SimpleNamespace(frames_per_input=2)
    assert _limit(model, 28, 2, slots=56, most=2200, subsampled=False) == "slots"
    assert _limit(model, 28, 2, slots=56, most=1800, subsampled=False) == "data"
    assert _limit(model, 28, 2, slots=64, most=1800, subsampled=False) == "data"
