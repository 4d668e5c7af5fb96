"""Entropy production and dissipation maps from microscopy movies.

The engine is headless: ``simulate`` makes movies with exact entropy production,
``EPEstimator`` learns the stochastic entropy production of each transition from the
frames alone and leaves a ``TrainedModel`` (inference only), and ``load_model`` restores a
saved one.  Heavy dependencies (torch)
are imported on first use.
"""

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["simulate", "EPEstimator", "FitResult", "TrainedModel", "load_model", "load_estimator",
           "InputError", "__version__"]

from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from . import simulate
    from .estimate import EPEstimator, FitResult, TrainedModel, load_estimator, load_model

_LAZY = {
    "simulate": (".simulate", None),
    "EPEstimator": (".estimate", "EPEstimator"),
    "FitResult": (".estimate", "FitResult"),
    "TrainedModel": (".estimate", "TrainedModel"),
    "load_model": (".estimate", "load_model"),
    "load_estimator": (".estimate", "load_estimator"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = import_module(module_name, __name__)
    return module if attr is None else getattr(module, attr)
