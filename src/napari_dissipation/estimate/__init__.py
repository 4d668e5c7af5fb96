"""The neural estimator of entropy production (NEEP with a convolutional network)."""

from .config import EstimatorConfig
from .estimator import EPEstimator, FitResult, load_estimator
from .train import Progress

__all__ = ["EPEstimator", "EstimatorConfig", "FitResult", "Progress", "load_estimator"]
