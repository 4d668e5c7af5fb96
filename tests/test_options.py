"""The options schema: defaults valid, values checked, old names accepted."""

from __future__ import annotations

import pytest

from napari_dissipation import EPEstimator, InputError
from napari_dissipation.options import GROUPS, OPTIONS, defaults, option, validate


def test_defaults_pass_their_own_checks():
    assert validate({}) == defaults()
    for o in OPTIONS:
        assert o.group in GROUPS
        assert o.label and o.help.endswith(".")
        assert o.check(o.default) == o.default


@pytest.mark.parametrize("name, value", [
    ("frames_per_input", 1), ("validation_fraction", 1.0), ("max_seconds", 0),
    ("batch_size", 2.5), ("precision", "float16"), ("seed", -1), ("patience", True),
    ("learning_rate", float("nan")), ("n_patterns", "many"),
])
def test_bad_values_name_their_option(name, value):
    with pytest.raises(InputError) as err:
        EPEstimator(**{name: value})
    assert err.value.option == name
    assert name in str(err.value) and "--" not in str(err.value)


def test_unknown_option_lists_the_known_ones():
    with pytest.raises(InputError, match="unknown option 'frames'.*frames_per_input"):
        EPEstimator(frames=3)


def test_old_name_of_the_pattern_count():
    assert option("n_modes") is option("n_patterns")
    assert EPEstimator(n_modes=8).config.n_patterns == 8


def test_values_are_converted():
    cfg = EPEstimator(max_seconds=5, frames_per_input="3", threads=None).config
    assert cfg.max_seconds == 5.0 and isinstance(cfg.max_seconds, float)
    assert cfg.frames_per_input == 3 and cfg.threads is None
