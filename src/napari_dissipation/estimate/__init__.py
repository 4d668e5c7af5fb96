"""The neural estimator of entropy production (NEEP with a convolutional network).

:class:`EPEstimator` holds the options and trains; :class:`TrainedModel` is what training
leaves (inference only), also read back by :func:`load_model`.
"""

from .config import EstimatorConfig
from .estimator import EPEstimator
from .result import FitResult
from .train import Progress
from .trained import TrainedModel, load_model

#: The name earlier versions used for :func:`load_model` (it returns a TrainedModel).
load_estimator = load_model

__all__ = ["EPEstimator", "EstimatorConfig", "FitResult", "Progress", "TrainedModel",
           "load_estimator", "load_model"]
