"""napari sample data: one movie, dt and the exact truth in the layer metadata."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from napari_dissipation.gui import sample_data


@pytest.mark.parametrize("name,shape,rate", [("bead_spring_2", (20, 40), 2.025),
                                             ("bead_spring_5", (20, 100), 0.6298)])
def test_bead_spring_samples(name, shape, rate):
    start = time.perf_counter()
    ((data, kwargs, kind),) = getattr(sample_data, name)()
    assert time.perf_counter() - start < 5
    assert kind == "image" and data.ndim == 3 and data.shape[1:] == shape
    assert 1000 <= data.shape[0] <= 20000 and data.dtype == np.uint8
    meta = kwargs["metadata"]
    assert meta["dt"] == 0.01
    assert meta["ep_rate"] == pytest.approx(rate, abs=5e-5)
    assert meta["truth"]["ep_rate"] == meta["ep_rate"]
    assert len(meta["truth"]["step_ep"]) == data.shape[0] - 1
    assert kwargs["name"].startswith("Bead-spring movie")


def test_filament_network_sample():
    start = time.perf_counter()
    ((data, kwargs, kind),) = sample_data.filament_network()
    assert time.perf_counter() - start < 10  # about 2 s on a busy 2-core machine
    assert kind == "image" and data.shape == (400, 64, 64)
    meta = kwargs["metadata"]
    assert meta["dt"] == 0.01 and 1 < meta["ep_rate"] < 10
    truth = meta["truth"]
    assert sum(truth["node_ep_rate"]) == pytest.approx(meta["ep_rate"])
    assert np.asarray(truth["map"]).shape == (64, 64)
    assert kwargs["name"] == "Filament network movie"


def test_sample_module_does_not_import_napari():
    import subprocess

    code = ("import sys, napari_dissipation.gui.sample_data as s; s.bead_spring_2(); "
            "print('napari' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
