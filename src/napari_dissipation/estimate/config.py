"""Every knob of the estimator, with its default and unit."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..errors import InputError

__all__ = ["EstimatorConfig"]


@dataclass
class EstimatorConfig:
    """Options of :class:`~napari_dissipation.estimate.EPEstimator`.

    Attributes
    ----------
    frames_per_input : int
        k, consecutive frames per input (k − 1 transitions); k > 2 helps when the movie
        does not show every degree of freedom.
    channels : int
        Width of the convolutional feature maps.
    max_pools : int
        Largest number of 2x down-samplings in the convolutional part.
    n_modes : int
        Whole-frame patterns of the global part (initialised from principal components).
    hidden : int
        Width of the global part's hidden layer.
    batch_size : int
        Transitions per training step.
    learning_rate, weight_decay : float
        Adam's step size and L2 penalty.
    max_iterations : int
        Training budget in steps.
    max_seconds : float or None
        Training budget in wall-clock seconds (None: no limit).
    patience : int
        Evaluations without improvement of the validation objective before stopping.
    eval_every : int
        Steps between evaluations on the held-out data.
    eval_windows : int
        Held-out windows used for early stopping (all are used for the final rate).
    validation_fraction : float
        Fraction of movies (or time blocks, for fewer than 4 movies) held out.
    stride : int
        Keep every ``stride``-th frame (time step ``stride · dt``).
    bin : int
        Sum ``bin x bin`` pixel blocks before anything else.
    seed : int
        Seeds the split, the initial weights and the batches: a CPU run is reproducible.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    threads : int or None
        torch CPU threads (None: torch's default).
    """

    frames_per_input: int = 2
    channels: int = 8
    max_pools: int = 2
    n_modes: int = 16
    hidden: int = 64
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    max_iterations: int = 20000
    max_seconds: float | None = None
    patience: int = 20
    eval_every: int = 200
    eval_windows: int = 20000
    validation_fraction: float = 0.25
    stride: int = 1
    bin: int = 1
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self):
        positive = ["frames_per_input", "n_modes", "hidden", "batch_size",
                    "max_iterations", "patience", "eval_every", "eval_windows", "stride", "bin"]
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.frames_per_input < 2:
            raise InputError(f"frames_per_input must be at least 2, got {self.frames_per_input}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise InputError(
                f"validation_fraction must lie in (0, 1), got {self.validation_fraction}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise InputError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.learning_rate <= 0:
            raise InputError(f"learning_rate must be positive, got {self.learning_rate}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EstimatorConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
