"""Shared fixtures and the split between engine tests and GUI tests.

The test folders mirror the package (``estimate/``, ``simulate/``, ``io/``, ``cli/``,
``gui/``); tests of the package as a whole stay at the top.

Engine tests need neither a display nor napari.  A test is a GUI test when it is marked
``gui`` or asks for a Qt/napari fixture (``qtbot``, ``make_napari_viewer``, ...); such tests
get the ``gui`` marker here, so ``pytest -m "not gui"`` runs the engine alone.  GUI tests need
an X server with OpenGL (pytest-xvfb starts Xvfb when it is installed).  Without one they are
skipped on a developer's machine, and fail under CI (``CI`` set) so that nothing is
silently left out there.

Tests that train a network for more than a few seconds, run ``torchrun`` or kill and resume a
fit are marked ``slow``; ``pytest -m "not slow and not gui"`` is the quick run, plain
``pytest`` (what CI runs) runs everything.  Both markers are registered in pyproject.toml
(``--strict-markers``).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

GUI_FIXTURES = frozenset(
    {"qtbot", "qapp", "make_napari_viewer", "make_napari_viewer_proxy", "viewer_model"}
)


def _has_display() -> bool:
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if GUI_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)


def pytest_runtest_setup(item):
    # pytest-xvfb has set DISPLAY in its pytest_configure by now.
    if item.get_closest_marker("gui") is None or _has_display():
        return
    if os.environ.get("CI"):
        pytest.fail("GUI test under CI but no X display: is Xvfb installed, pytest-xvfb active?")
    pytest.skip("GUI test: no X display (install Xvfb and pytest-xvfb, see README)")


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy random generator with a fixed seed, new for every test."""
    return np.random.default_rng(20250601)


@pytest.fixture(scope="session")
def bead_spring_small():
    """A small simulated 2-bead chain (Tc = 1, Th = 10) with exact EP.

    4 movies of 300 frames of 20 x 40 pixels, dt = 0.01 s, seed 0: big enough for the
    estimator to learn something in a short test, small enough to make in well under a
    second.  Shared by the whole session: treat it as read-only.
    """
    from napari_dissipation import simulate

    return simulate.bead_spring(
        n_beads=2, t_cold=1.0, t_hot=10.0, n_movies=4, n_frames=300, dt=0.01, seed=0
    )


@pytest.fixture(scope="session")
def equilibrium_small():
    """Like ``bead_spring_small`` but both baths at T = 1: exact EP zero (to rounding)."""
    from napari_dissipation import simulate

    return simulate.bead_spring(
        n_beads=2, t_cold=1.0, t_hot=1.0, n_movies=4, n_frames=300, dt=0.01, seed=1
    )
